"""The shipped formulation studies run: a tiny copy of studies/edm_ablation.toml (configurations
A to F) and of studies/flow_matching.toml (its three samplers, at one timestep sampling and step
count), each trial a couple of steps of a tiny CNN, made with command-line overrides of the
shipped files themselves (every trial costs seconds of study bookkeeping, so few trials)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from ablate.cli import app
from ablate.study import load_existing
from ablate.study_config import load_study_file

STUDIES = Path(__file__).resolve().parents[1] / "studies"
TINY = ["run.steps=2", "run.subset=64", "run.batch_size=16", "run.grid_size=4",
        'run.device="cpu"', 'run.decoder={name = "cnn", channels = [4, 8], time_hidden = 16}',
        "eval.samples=8", 'eval.metrics=["fid"]']
runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_tiny(name: str, tmp_path: Path, *extra: str) -> list[optuna.trial.FrozenTrial]:
    out = (tmp_path / "out").as_posix()
    args = [str(STUDIES / name), f'study.output="{out}"', *TINY, *extra]
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 0, result.output
    study, _ = load_existing(load_study_file(STUDIES / name, overrides=args[1:]))
    return study.get_trials()


def test_edm_ablation_trains_configurations_a_to_f_in_order(tmp_path):
    trials = run_tiny("edm_ablation.toml", tmp_path, "run.degradation.sample_steps=2")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    labels = [t.user_attrs.get("baseline", "") for t in trials]
    assert [label[:1] for label in labels] == list("ABCDEF"), labels
    assert trials[0].params["degradation.sampler"] == "euler"
    assert trials[-1].params == {"degradation.preconditioning": "edm", "degradation.loss": "edm",
                                 "degradation.discretisation": "edm",
                                 "degradation.sampler": "stochastic"}


def test_flow_matching_study_runs_every_sampler(tmp_path):
    trials = run_tiny("flow_matching.toml", tmp_path, "run.degradation.sample_steps=4",
                      'search."run.degradation.sample_steps"=[4]',
                      'run.degradation.timestep_sampling="logit_normal"',
                      'search."run.degradation.timestep_sampling"=["logit_normal"]')
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert {t.params["degradation.sampler"] for t in trials} == {"euler", "midpoint", "heun"}
