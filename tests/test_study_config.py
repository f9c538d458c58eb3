"""Study files: every mistake is one clear error before training; the dry run shows the plan;
search spaces are conditional on plugin choices and baselines default to the base run."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import ConfigError
from ablate.study_config import load_study_file
from tests.conftest import TINY_STUDY_RUN

runner = CliRunner()

RUN = TINY_STUDY_RUN


def write_study(tmp_path: Path, study: str, search: str = "", run: str = RUN,
                extra: str = "") -> Path:
    path = tmp_path / "study.toml"
    path.write_text(f'[study]\noutput = "{(tmp_path / "out").as_posix()}"\n{study}\n{run}\n'
                    f"[search]\n{search}\n{extra}", encoding="utf-8")
    return path


LR = '"run.lr" = {low = 1e-4, high = 1e-2, log = true}'


@pytest.mark.parametrize(
    ("study", "search", "extra", "fragment"),
    [
        ("trails = 3", LR, "", "study.trails: unknown key 'trails' (did you mean 'trials'?"),
        ('trials = 2\nsampler = "tpee"', LR, "", "study.sampler: unknown sampler 'tpee'"),
        ('trials = 2\npruner = {name = "median", n_warmup_step = 1}', LR, "",
         "study.pruner.n_warmup_step: unknown key"),
        ('trials = 2\nobjective = ["loss", "train_seconds"]\npruner = "median"', LR, "",
         "study.pruner: pruning needs a single objective"),
        ('trials = 2\nsampler = "grid"', LR, "", "search.run.lr: grid needs discrete values"),
        ('trials = 2\nsampler = "grid"',
         '"run.decoder.name" = ["cnn", "unet"]\n"run.decoder.unet.base_width" = [8, 16]', "",
         "study.sampler: grid needs a fixed space"),
        ("trials = 2", '"run.schedule.beta_mx" = {low = 0.01, high = 0.1}', "",
         "did you mean 'beta_max'?"),
        ("trials = 2", '"run.schedule.beta_max" = {low = 0.01, high = 1.5}', "",
         "search.run.schedule.beta_max.high: 1.5 is out of range (must be < 1"),
        ("trials = 2", '"run.T" = {low = 5.5, high = 20}', "",
         "search.run.T.low: 5.5 is not a valid int"),
        ("trials = 2", '"run.decoder.name" = ["cnn", "unett"]', "",
         "search.run.decoder.name: unknown decoder 'unett' (did you mean 'unet'?"),
        ("trials = 2", '"run.decoder.unet.base_width" = [8, 16]', "",
         "'unet' is not among the searched plugins"),
        ('trials = 2\nobjective = "fid"', LR, "", "study.objective: unknown objective 'fid'"),
        ('trials = 2\nconstraints = ["run.schedule.beta_min << 3"]', LR, "",
         "study.constraints[0]: cannot read constraint"),
        ("trials = 2", '"run.T" = {low = 20, high = 40}', "",
         "study.baselines[0].run.T: 10 is outside the searched int [20, 40]"),
        ("objective = \"loss\"", LR, "", "study.trials: no budget"),
        ("trials = 2", '"run.seed" = [1, 2]', "", "search.run.seed: run.seed cannot be searched"),
        ("trials = 2", LR, '[eval]\nmetrics = ["fidd"]\n', ": eval"),
    ],
)
def test_malformed_study_file_exits_2_naming_the_key(tmp_path: Path, study: str, search: str,
                                                    extra: str, fragment: str):
    path = write_study(tmp_path, study, search, extra=extra)
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_seed_in_the_base_run_is_refused_with_a_fix(tmp_path: Path):
    path = write_study(tmp_path, "trials = 2", LR, run=RUN + "seed = 3\n")
    with pytest.raises(ConfigError, match="trials get their seeds from") as caught:
        load_study_file(path)
    assert caught.value.key == "run.seed"


def test_dry_run_prints_plan_and_conditional_space_and_writes_nothing(tmp_path: Path):
    path = write_study(
        tmp_path, 'trials = 4\npruner = {name = "median", n_startup_trials = 1}\n'
                  'constraints = ["run.schedule.beta_min < run.schedule.beta_max"]\n'
                  'baselines = [{name = "coursework"}, {name = "big", "run.decoder.name" = '
                  '"unet", "run.decoder.unet.base_width" = 16}]',
        '"run.schedule.beta_max" = {low = 0.01, high = 0.2, log = true}\n'
        '"run.decoder.name" = ["cnn", "unet"]\n'
        '"run.decoder.cnn.kernel_size" = {low = 3, high = 7, step = 2}\n'
        '"run.decoder.unet.base_width" = [8, 16]\n')
    result = runner.invoke(app, ["run", str(path), "--dry-run", "--n-trials", "6"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "budget 6 trials" in text
    assert "pruner median (n_startup_trials=1" in text
    assert "run.decoder.cnn.kernel_size │ int [3, 7] step 2 │ decoder.name in cnn" in text
    assert "run.schedule.beta_max │ float [0.01, 0.2] log │ always" in text
    assert "constraint: run.schedule.beta_min < run.schedule.beta_max" in text
    assert "baseline coursework: decoder.name=cnn, schedule.beta_max=0.02, " \
           "decoder.cnn.kernel_size=7" in text
    assert "baseline big: decoder.name=unet, schedule.beta_max=0.02, " \
           "decoder.unet.base_width=16" in text
    assert "nothing was trained" in text
    assert not (tmp_path / "out").exists()


def test_conditional_space_samples_only_the_chosen_plugins_parameters(tmp_path: Path):
    path = write_study(tmp_path, "trials = 2\nbaselines = []",
                       '"run.decoder.name" = ["cnn", "unet"]\n'
                       '"run.decoder.cnn.kernel_size" = [3, 5]\n'
                       '"run.decoder.unet.base_width" = [8, 16]\n'
                       '"run.decoder.unet.channel_mult" = [[1, 2], [1, 1, 2]]\n')
    space = load_study_file(path).space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        point = space.sample(study.ask())
        seen.add(point["decoder.name"])
        table = space.run_table(point)
        if point["decoder.name"] == "cnn":
            assert set(point) == {"decoder.name", "decoder.cnn.kernel_size"}
            assert table["decoder"] == {"name": "cnn", "channels": [4, 8], "time_hidden": 16,
                                        "kernel_size": point["decoder.cnn.kernel_size"]}
        else:
            assert set(point) == {"decoder.name", "decoder.unet.base_width",
                                  "decoder.unet.channel_mult"}
            assert table["decoder"]["channel_mult"] in ([1, 2], [1, 1, 2])
            assert "channels" not in table["decoder"]
    assert seen == {"cnn", "unet"}


def test_constraint_marks_violating_configurations(tmp_path: Path):
    path = write_study(tmp_path, 'trials = 2\nconstraints = ["run.schedule.beta_min < '
                                 'run.schedule.beta_max", "run.T >= 10"]',
                       '"run.schedule.beta_min" = {low = 1e-4, high = 0.1, log = true}')
    spec = load_study_file(path)
    ok, _ = spec.resolve({"schedule.beta_min": 1e-3}, seed=0)
    bad, _ = spec.resolve({"schedule.beta_min": 0.02}, seed=0)
    assert spec.violated(ok) is None
    assert spec.violated(bad).text == "run.schedule.beta_min < run.schedule.beta_max"


def test_trial_seed_comes_from_study_seed_and_trial_number(tmp_path: Path):
    spec = load_study_file(write_study(tmp_path, "trials = 2\nseed = 7", LR))
    config, _ = spec.resolve(dict(spec.baselines[0].point), spec.trial_seed(3))
    assert config.seed == 10


def test_show_before_the_study_ran_says_how_to_start_it(tmp_path: Path):
    path = write_study(tmp_path, "trials = 2", LR)
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 2
    assert "has not run yet" in result.output and f"ablate run {path}" in result.output
