"""configs/fast.toml is the base point of studies/fast_recipe.toml: the study's first trial is
the candidate recipe itself, apart from the fidelity settings (epochs of a subset), and its
search covers every part of the recipe the issue names."""

from __future__ import annotations

from pathlib import Path

from ablate.run_file import load_run_file
from ablate.study_config import load_study_file

ROOT = Path(__file__).resolve().parents[1]
FIDELITY = {"epochs", "steps", "subset", "sample_every", "grid_size"}


def test_the_study_searches_from_the_candidate_recipe():
    candidate = load_run_file(ROOT / "configs" / "fast.toml").run.to_dict()
    base = load_study_file(ROOT / "studies" / "fast_recipe.toml").base.to_dict()
    differing = {key for key in candidate if candidate[key] != base[key]}
    assert differing <= FIDELITY, differing


def test_the_study_searches_formulation_width_optimiser_schedule_batch_ema_and_sampler():
    spec = load_study_file(ROOT / "studies" / "fast_recipe.toml")
    keys = {p.key for p in spec.space.params}
    assert {"run.degradation.name", "run.decoder.base_width", "run.optimizer.name",
            "run.lr_schedule.name", "run.batch_size", "run.ema.decay",
            "run.degradation.edm.sample_steps", "run.degradation.gaussian.sampler"} <= keys
    assert spec.pruner.name == "successive-halving"


def test_the_candidate_says_it_is_not_yet_searched():
    text = (ROOT / "configs" / "fast.toml").read_text(encoding="utf-8")
    assert text.startswith("# CANDIDATE, NOT YET SEARCHED")
