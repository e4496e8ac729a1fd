"""Settings of the command line and the services: flags > environment (``PGKD_*``) > TOML file > defaults.

The library never reads the environment; these settings are turned into typed arguments at the
edge. Secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pgkd.errors import ConfigError

TeacherKind = Literal["local", "simulated", "openai"]


class Settings(BaseSettings):
    """Everything a run can be configured with. Each field is also ``PGKD_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="PGKD_", extra="forbid")

    # data
    dataset: str = "bbc"
    text_column: str = "text"
    label_column: str = "label"
    max_chars: int | None = Field(600, ge=1, description="truncate texts to this many characters")
    n_train: int = Field(800, ge=2, description="seed labels the student trains on")
    n_validation: int = Field(200, ge=2, description="labels that pick the model")
    max_test: int | None = Field(2000, ge=1, description="test texts at most (none: all)")
    max_traffic: int | None = Field(20000, ge=0, description="traffic pool texts at most (none: all)")
    seed: int = Field(0, ge=0)
    # student
    base_model: str | None = None
    mode: Literal["head", "full"] = Field(
        "full", description="full: fine-tune the encoder (learns); head: frozen encoder, linear head (fast)"
    )
    max_length: int = Field(64, ge=8, le=512, description="tokens per text the student reads")
    class_weight: Literal["none", "sqrt", "balanced"] = "sqrt"
    max_epochs: int | None = Field(None, ge=1, description="epochs at most; none: 20 full, 200 head")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    warm_start: bool = Field(False, description="full mode: keep fine-tuning the last model, not the base")
    calibrate: bool = Field(True, description="temperature-scale every model's confidence on validation")
    detect_out_of_taxonomy: bool = Field(True, description="fit a detector of texts that fit no class")
    out_of_taxonomy_k: int = Field(10, ge=1, le=1000, description="the detector's k-th nearest neighbour")
    out_of_taxonomy_quantile: float = Field(
        0.95, gt=0, lt=1, description="share of in-taxonomy validation texts under the threshold"
    )
    # loop
    steps: int = Field(10, ge=0, le=1000, description="PGKD steps at most")
    samples_per_step: int = Field(32, ge=1, le=10_000, description="samples the teacher writes a step")
    patience: int = Field(5, ge=1, description="steps without improvement before stopping")
    prompt_examples: int = Field(16, ge=1, le=200, description="examples of each kind in a prompt")
    target_classes: int = Field(10, ge=1, description="weak classes the teacher writes for a step")
    guidance_split: float = Field(0.0, ge=0, lt=1, description="share of validation that only guides")
    guidance_folds: int = Field(
        0, ge=0, le=20, description="guide from k-fold out-of-fold verdicts on the training set (0: off)"
    )
    # The paper keeps any validation gain (0). A real teacher's gains are often inside the noise of
    # 200 labels (bootstrap sd ~0.03 of macro-F1), so the default margin keeps the seed model unless
    # a step beats it clearly (BENCHMARKS.md s.4 replays every recorded run under each margin).
    min_improvement: float = Field(
        0.02, ge=0, le=1, description="validation gain a step needs over the best so far to be kept"
    )
    # teacher
    teacher: TeacherKind = "local"
    teacher_url: str | None = None
    teacher_model: str | None = None
    teacher_api_key: SecretStr = SecretStr("not-needed")
    teacher_timeout: float = Field(
        600.0, gt=0, le=86_400, description="seconds per teacher request; a CPU server is slow"
    )
    teacher_max_retries: int = Field(3, ge=0, le=20)
    teacher_shots: int = Field(8, ge=0, le=100, description="few-shot demonstrations per label request")
    teacher_samples_per_call: int = Field(8, ge=1, le=100)
    teacher_max_calls: int | None = Field(None, ge=0)
    teacher_max_tokens: int | None = Field(None, ge=0)
    teacher_max_cost: float | None = Field(None, ge=0)
    prompt_price_per_1k: float = Field(0.0, ge=0)
    completion_price_per_1k: float = Field(0.0, ge=0)
    simulated_accuracy: float = Field(1.0, ge=0, le=1, description="the SIMULATED teacher's accuracy")
    local_model: str = "qwen2.5-coder-1.5b"
    local_threads: int | None = Field(None, ge=1, le=512)
    # output
    runs_dir: Path = Path("runs")

    @model_validator(mode="after")
    def _one_source_of_guidance(self) -> Settings:
        if self.guidance_folds == 1:
            raise ValueError("guidance_folds must be 0 (off) or at least 2")
        if self.guidance_folds and self.guidance_split:
            raise ValueError("guidance_folds and guidance_split are two sources of guidance: choose one")
        return self


S = TypeVar("S", bound=Settings)


def load_settings(config_file: Path | None = None, kind: type[S] = Settings, **flags: Any) -> S:  # type: ignore[assignment]
    """Settings of type ``kind`` from flags (``None`` = not given), the environment, then
    ``config_file`` (TOML)."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")

    class _FromFile(kind):  # type: ignore[valid-type,misc]
        model_config = SettingsConfigDict(env_prefix="PGKD_", extra="forbid", toml_file=config_file)

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
            return (*sources, TomlConfigSettingsSource(settings_cls)) if config_file else sources

    try:
        values = _FromFile(**{k: v for k, v in flags.items() if v is not None})
        return kind.model_validate(values.model_dump())
    except ValidationError as exc:  # one error type for every bad setting, naming each one
        raise ConfigError(describe(exc, config_file)) from None


def describe(exc: ValidationError, config_file: Path | None = None) -> str:
    """Every problem of a validation error on one line each: ``setting: what is wrong (got value)``.

    >>> try:
    ...     Settings(steps=-1)
    ... except ValidationError as exc:
    ...     print(describe(exc))
    invalid settings:
      steps: Input should be greater than or equal to 0 (got -1)
    """
    where = f" in {config_file}" if config_file else ""
    lines = [f"invalid settings{where}:"]
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        got = "" if error["type"] == "missing" else f" (got {error.get('input')!r})"
        if "secret" in name or "password" in name or "api_key" in name:
            got = ""  # never echo a secret
        lines.append(f"  {name}: {error['msg']}{got}")
    return "\n".join(lines)
