import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from cli.main import app
from pgkd.errors import ConfigError
from pgkd.settings import load_settings


def test_precedence_flags_over_env_over_file(tmp_path, monkeypatch):
    cfg = tmp_path / "pgkd.toml"
    cfg.write_text('steps = 3\nsamples_per_step = 8\ndataset = "wordnet"\nteacher_api_key = "from-file"\n')
    monkeypatch.setenv("PGKD_SAMPLES_PER_STEP", "16")
    s = load_settings(cfg, steps=None, dataset="bbc")
    assert s.dataset == "bbc"  # flag
    assert s.samples_per_step == 16  # environment beats the file
    assert s.steps == 3  # file beats the default
    assert s.teacher_api_key.get_secret_value() == "from-file"
    assert "from-file" not in repr(s) and "from-file" not in str(s.model_dump())


def test_invalid_values_are_refused(tmp_path):
    with pytest.raises(ValueError, match="teacher"):
        load_settings(None, teacher="gpt")
    with pytest.raises(ConfigError, match=r"config file .*missing\.toml does not exist"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("stepz = 3\n")
    with pytest.raises(ConfigError, match="stepz"):
        load_settings(bad)


def test_every_number_is_bounded_and_every_problem_named_at_once():
    with pytest.raises(
        ConfigError, match=r"(?s)n_train: .*greater than or equal to 2 \(got -5\).*teacher_timeout"
    ):
        load_settings(None, n_train=-5, teacher_timeout=0)
    with pytest.raises(ConfigError) as refused:
        load_settings(None, teacher_api_key=SecretStr("sk-secret"), simulated_accuracy=2)
    assert "simulated_accuracy" in str(refused.value) and "sk-secret" not in str(refused.value)


def test_cli_help_and_bad_settings_exit_cleanly():
    runner = CliRunner()
    result = runner.invoke(app, ["distill", "--help"])
    assert result.exit_code == 0 and "--teacher" in result.output and "--dataset" in result.output
    result = runner.invoke(app, ["distill", "--teacher", "gpt"])
    assert result.exit_code == 2 and "invalid settings" in result.output


def test_cli_reports_library_errors_without_traceback(tmp_path):
    result = CliRunner().invoke(
        app, ["distill", "--dataset", str(tmp_path / "nope.csv"), "--teacher", "simulated"]
    )
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output


def test_restart_backoff_bounds_are_checked_where_settings_enter():
    from streams.settings import StreamSettings

    with pytest.raises(ValueError, match="must not exceed restart_max_backoff"):
        StreamSettings(restart_backoff=30, restart_max_backoff=5)


def test_the_selection_margin_reaches_the_loop(monkeypatch):
    from pgkd.distill_records import DistillConfig
    from pgkd.runner import distill_config

    # One default, whether the loop is configured from settings or called as a library.
    assert distill_config(load_settings(None)).min_improvement == DistillConfig().min_improvement > 0
    monkeypatch.setenv("PGKD_MIN_IMPROVEMENT", "0.03")
    assert distill_config(load_settings(None)).min_improvement == 0.03
    assert distill_config(load_settings(None, min_improvement=0.0)).min_improvement == 0.0
    with pytest.raises(ConfigError, match="min_improvement"):
        load_settings(None, min_improvement=-0.1)


def test_out_of_fold_guidance_reaches_the_loop_and_excludes_a_validation_split(monkeypatch):
    from pgkd.runner import distill_config

    assert distill_config(load_settings(None)).guidance_folds == 0
    monkeypatch.setenv("PGKD_GUIDANCE_FOLDS", "3")
    assert distill_config(load_settings(None)).guidance_folds == 3
    with pytest.raises(ConfigError, match="at least 2"):
        load_settings(None, guidance_folds=1)
    with pytest.raises(ConfigError, match="choose one"):
        load_settings(None, guidance_split=0.5)
