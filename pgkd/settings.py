"""Settings of the command line and the services: flags > environment (``PGKD_*``) > TOML file > defaults.

The library never reads the environment; these settings are turned into typed arguments at the
edge. Secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

TeacherKind = Literal["local", "simulated", "openai"]


class Settings(BaseSettings):
    """Everything a run can be configured with. Each field is also ``PGKD_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="PGKD_", extra="forbid")

    # data
    dataset: str = "bbc"
    text_column: str = "text"
    label_column: str = "label"
    max_chars: int | None = Field(600, ge=1, description="truncate texts to this many characters")
    n_train: int = 800
    n_validation: int = 200
    max_test: int | None = 2000
    max_traffic: int | None = 20000
    seed: int = 0
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
    steps: int = 10
    samples_per_step: int = 32
    patience: int = 5
    prompt_examples: int = 16
    target_classes: int = 10
    guidance_split: float = Field(0.0, ge=0, lt=1, description="share of validation that only guides")
    # teacher
    teacher: TeacherKind = "local"
    teacher_url: str | None = None
    teacher_model: str | None = None
    teacher_api_key: SecretStr = SecretStr("not-needed")
    teacher_timeout: float = Field(600.0, description="seconds per teacher request; a CPU server is slow")
    teacher_max_retries: int = 3
    teacher_shots: int = 8
    teacher_samples_per_call: int = 8
    teacher_max_calls: int | None = None
    teacher_max_tokens: int | None = None
    teacher_max_cost: float | None = None
    prompt_price_per_1k: float = 0.0
    completion_price_per_1k: float = 0.0
    simulated_accuracy: float = 1.0
    local_model: str = "qwen2.5-coder-1.5b"
    local_threads: int | None = None
    # output
    runs_dir: Path = Path("runs")


S = TypeVar("S", bound=Settings)


def load_settings(config_file: Path | None = None, kind: type[S] = Settings, **flags: Any) -> S:  # type: ignore[assignment]
    """Settings of type ``kind`` from flags (``None`` = not given), the environment, then
    ``config_file`` (TOML)."""
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"config file {config_file} does not exist")

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

    values = _FromFile(**{k: v for k, v in flags.items() if v is not None})
    return kind.model_validate(values.model_dump())
