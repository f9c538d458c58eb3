"""Run-file validation: every mistake is one clear ConfigError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from ablate_builtins.cnn import Cnn
from ablate_builtins.linear import Linear

from ablate.config import parse_run
from ablate.errors import ConfigError
from ablate.run_file import load_run_file


def test_defaults_are_the_coursework_ddpm():
    config = parse_run({}, source="test")
    assert (config.T, config.batch_size, config.lr) == (1000, 128, 2e-4)
    assert config.schedule == Linear(beta_min=1e-4, beta_max=0.02)
    assert config.decoder == Cnn()
    assert (config.dataset.name, config.degradation.name, config.ema.name) == (
        "mnist", "gaussian", "none")
    assert config.scaling == "centered"


def test_component_given_by_name_or_table():
    by_name = parse_run({"ema": "ema"}, source="test")
    by_table = parse_run({"ema": {"name": "ema", "decay": 0.9}}, source="test")
    assert by_name.ema.name == by_table.ema.name == "ema"
    assert by_table.ema.decay == 0.9


def test_resolved_config_round_trips():
    config = parse_run({"T": 50, "ema": {"name": "ema", "decay": 0.9}}, source="test")
    assert parse_run(config.to_dict(), source="test") == config


@pytest.mark.parametrize(
    ("table", "key", "fragment"),
    [
        ({"decoder": "cnnn"}, "run.decoder", "did you mean 'cnn'"),
        ({"schedule": {"name": "linear", "beta_maxx": 0.1}}, "run.schedule.beta_maxx",
         "did you mean 'beta_max'"),
        ({"batch_sise": 3}, "run.batch_sise", "did you mean 'batch_size'"),
        ({"T": "1000"}, "run.T", "not a valid int"),
        ({"T": 0}, "run.T", "must be >= 1"),
        ({"batch_size": 0}, "run.batch_size", "must be >= 1"),
        ({"lr": -1.0}, "run.lr", "must be > 0"),
        ({"scaling": "unit"}, "run.scaling", "not a valid 'centered' | 'symmetric'"),
        ({"schedule": {"name": "linear", "beta_min": 0.1, "beta_max": 0.01}}, "run.schedule",
         "must not exceed"),
        ({"schedule": {"name": "linear", "beta_max": 1.5}}, "run.schedule.beta_max",
         "must be < 1"),
        ({"decoder": {"name": "cnn", "channels": [16, "x"]}}, "run.decoder.channels",
         "not a valid list[int]"),
        ({"decoder": {"name": "cnn", "kernel_size": 4}}, "run.decoder", "must be odd"),
        ({"ema": 3}, "run.ema", "expected a ema name"),
        ({"subset": 10, "batch_size": 32}, "run.subset", "smaller than batch_size"),
    ],
)
def test_invalid_values_name_the_key_and_the_fix(table, key, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_run(table, source="run.toml")
    assert caught.value.key == key
    assert fragment in str(caught.value)
    assert caught.value.exit_code == 2


def test_impossible_schedule_is_rejected_with_t():
    with pytest.raises(ConfigError, match=r"alpha_bar_t must decrease|beta_t must lie"):
        parse_run({"schedule": {"name": "linear", "beta_min": 0.5, "beta_max": 0.99}, "T": 5000},
                  source="test")


def test_far_from_zero_terminal_alpha_bar_is_a_warning():
    config = parse_run({"T": 10}, source="test")
    assert any("far from 0" in w for w in config.schedule.check(config.T))
    assert parse_run({}, source="test").schedule.check(1000) == []


def test_toml_syntax_error_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.toml"
    path.write_text("[run\nT = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.toml: invalid TOML"):
        load_run_file(path)


def test_unknown_top_level_table_is_rejected(tmp_path: Path):
    path = tmp_path / "typo.toml"
    path.write_text("[runn]\nT = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean 'run'"):
        load_run_file(path)


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_run_file(tmp_path / "nope.toml")
