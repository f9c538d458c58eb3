"""Replicates and common random numbers in studies: every configuration trains k seeds in
lockstep, its value is their mean, trials share seeds (so identical configurations give
identical losses), pruning sees replicate means, and an interrupted trial resumes exactly."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from rich.console import Console

from ablate import metrics_log
from ablate.errors import ConfigError
from ablate.replicates import aggregate
from ablate.study import load_existing, run_study
from ablate.study_config import load_study_file
from ablate.study_display import StudyDisplay
from ablate.training import Interrupted
from tests.conftest import TINY_STUDY_RUN, CtrlCAt

RUN = TINY_STUDY_RUN
# grid_size changes only the picture: every configuration trains exactly the same way.
SAME_TRAINING = '[search]\n"run.grid_size" = [4, 9]\n'


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train fastest on one thread when other jobs share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_study(folder: Path, study: str, search: str = SAME_TRAINING) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(f'[study]\nname = "rep"\noutput = "{(folder / "out").as_posix()}"\n'
                    f"{study}\n{RUN}\n{search}", encoding="utf-8")
    return path


def quiet() -> StudyDisplay:
    return StudyDisplay(Console(file=io.StringIO()))


def trials_of(path: Path) -> list[optuna.trial.FrozenTrial]:
    study, _ = load_existing(load_study_file(path))
    return study.get_trials()


def replicate_losses(trial: optuna.trial.FrozenTrial) -> list[list[float]]:
    """Each replicate's loss per epoch, from its own run folder."""
    folder = Path(trial.user_attrs["run_dir"])
    return [[r["loss"] for r in metrics_log.read(folder / f"replicate_{i}" / "metrics.jsonl")]
            for i in range(trial.user_attrs["replicates"])]


@pytest.fixture(scope="module")
def paired(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_study(tmp_path_factory.mktemp("paired"), 'sampler = "grid"\nreplicates = 2')
    run_study(load_study_file(path), quiet())
    return path


def test_identical_configurations_see_identical_data_and_noise_across_trials(paired):
    first, second = trials_of(paired)
    assert first.params != second.params
    assert replicate_losses(first) == replicate_losses(second)
    assert replicate_losses(first)[0] != replicate_losses(first)[1]


def test_replicate_r_of_every_trial_trains_with_the_study_seed_plus_r(paired):
    for trial in trials_of(paired):
        assert trial.user_attrs["seed"] == 0
        folder = Path(trial.user_attrs["run_dir"])
        seeds = [json.loads((folder / f"replicate_{r}" / "config.json").read_text())["run"]
                 ["seed"] for r in range(2)]
        assert seeds == [0, 1]


def test_a_configuration_s_value_is_the_mean_of_its_replicates(paired):
    for trial in trials_of(paired):
        finals = [losses[-1] for losses in replicate_losses(trial)]
        assert trial.value == pytest.approx(np.mean(finals), rel=1e-12)
        per_epoch = np.mean(replicate_losses(trial), axis=0)
        assert [trial.intermediate_values[e] for e in (1, 2)] == pytest.approx(per_epoch)
        low, high = trial.user_attrs["loss_interval"]
        assert low < trial.value < high


def test_without_common_random_numbers_every_run_has_its_own_seed(tmp_path: Path):
    path = write_study(tmp_path, 'sampler = "grid"\nreplicates = 2\n'
                                 "common_random_numbers = false")
    run_study(load_study_file(path), quiet())
    first, second = trials_of(path)
    assert {first.user_attrs["seed"], second.user_attrs["seed"]} == {0, 2}
    assert replicate_losses(first)[0] != replicate_losses(second)[0]


def test_pruning_compares_replicate_means_and_stops_every_replicate(tmp_path: Path):
    path = write_study(tmp_path, 'trials = 2\nreplicates = 2\n'
                                 'pruner = {name = "median", n_startup_trials = 1}\n'
                                 'baselines = [{"run.lr" = 1e-2}, {"run.lr" = 1e-4}]',
                       '[search]\n"run.lr" = {low = 1e-4, high = 1e-2, log = true}\n')
    run_study(load_study_file(path), quiet())
    kept, pruned = trials_of(path)
    assert kept.state == TrialState.COMPLETE and pruned.state == TrialState.PRUNED
    assert list(pruned.intermediate_values) == [1]
    assert pruned.intermediate_values[1] == pytest.approx(
        np.mean([losses[0] for losses in replicate_losses(pruned)]))
    assert [len(losses) for losses in replicate_losses(pruned)] == [1, 1]


def test_an_interrupted_replicated_trial_resumes_to_the_uninterrupted_result(tmp_path: Path):
    study = 'trials = 1\nreplicates = 2\nsampler = "random"'
    reference = write_study(tmp_path / "reference", study)
    run_study(load_study_file(reference), quiet())
    path = write_study(tmp_path / "stopped", study)
    with pytest.raises(Interrupted):
        run_study(load_study_file(path), CtrlCAt(step=6))
    run_study(load_study_file(path), quiet())
    stopped, resumed = trials_of(path)
    assert stopped.user_attrs["outcome"] == "interrupted"
    assert resumed.state == TrialState.COMPLETE
    (expected,) = trials_of(reference)
    assert replicate_losses(resumed) == replicate_losses(expected)
    assert resumed.value == expected.value


def test_aggregate_gives_means_t_intervals_and_replicate_values():
    records = [{"epoch": 3, "step": 9, "loss": 1.0, "fid": 10.0, "fid_low": 8.0,
                "fid_high": 12.0, "fid_n": 50, "train_seconds": 2.0, "grid": "a.png"},
               {"epoch": 3, "step": 9, "loss": 2.0, "fid": 14.0, "fid_low": 13.0,
                "fid_high": 15.0, "fid_n": 50, "train_seconds": 4.0, "grid": "b.png"},
               {"epoch": 3, "step": 9, "loss": 3.0, "fid": 12.0, "fid_low": 11.0,
                "fid_high": 13.0, "fid_n": 50, "train_seconds": 6.0}]
    out = aggregate(records)
    half = 4.302652729911275 * 2.0 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(k)
    assert out["fid"] == 12.0 and out["fid_replicates"] == [10.0, 14.0, 12.0]
    assert (out["fid_low"], out["fid_high"]) == pytest.approx((12.0 - half, 12.0 + half))
    assert out["loss"] == 2.0 and out["loss_high"] - out["loss"] == pytest.approx(
        4.302652729911275 * 1.0 / np.sqrt(3))
    assert (out["fid_n"], out["train_seconds"], out["grid"], out["replicates"]) == (
        50, 4.0, "a.png", 3)


def test_aggregate_keeps_replicate_intervals_inside_the_metric_s_range():
    from ablate.plugin_host import default_host
    from ablate.replicates import metric_bounds

    bounds = metric_bounds(SimpleNamespace(metrics=["fid", "precision"]), default_host())
    assert bounds["fid"] == (0.0, np.inf) and bounds["precision"] == (0.0, 1.0)
    records = [{"epoch": 1, "step": 4, "loss": 1.0, "fid": fid, "fid_low": fid - 1,
                "fid_high": fid + 1, "precision": p, "precision_low": p, "precision_high": p}
               for fid, p in ((5.0, 0.1), (900.0, 0.9))]  # two replicates: t on 1 df
    out = aggregate(records, bounds)
    assert out["fid_low"] == 0.0 and out["fid_high"] > 900  # plain t: [-5230, 6140]
    assert (out["precision_low"], out["precision_high"]) == (0.0, 1.0)
    assert aggregate(records)["fid_low"] < 0  # without bounds, the plain t interval


@pytest.mark.parametrize(("line", "message"), [
    ("replicates = 0", "study.replicates: 0 is not an integer >= 1"),
    ("replicates = 2.5", "study.replicates: 2.5 is not an integer >= 1"),
    ('common_random_numbers = "yes"', "study.common_random_numbers: 'yes' is not true or false"),
])
def test_bad_replication_settings_name_the_key(tmp_path: Path, line: str, message: str):
    path = write_study(tmp_path, f"trials = 1\n{line}")
    with pytest.raises(ConfigError, match=message):
        load_study_file(path)


def test_replicates_sync_at_checkpointed_epochs_and_publish_every_epoch(tmp_path: Path):
    from ablate.replicates import ReplicatedRun
    from ablate.training import SilentReporter

    spec = load_study_file(write_study(tmp_path, "trials = 1\nreplicates = 2"))
    config, _ = spec.resolve({}, 0)
    config = dataclasses.replace(config, steps=16, checkpoint_every=2)  # 4 epochs of 4 steps
    seen = []

    def callback(record: dict) -> None:
        other = metrics_log.read(tmp_path / "trial" / "replicate_1" / "metrics.jsonl")
        seen.append((record["epoch"], len(other)))

    ReplicatedRun(config, tmp_path / "trial", 2, total_steps=16, host=spec.host,
                  reporter=SilentReporter(), evaluation=None, epoch_callback=callback).run()
    assert seen == [(1, 2), (2, 2), (3, 4), (4, 4)]
    published = metrics_log.read(tmp_path / "trial" / "metrics.jsonl")
    assert [r["epoch"] for r in published] == [1, 2, 3, 4]
    assert all(r["replicates"] == 2 for r in published)
