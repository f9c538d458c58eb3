"""configs/fast.toml is a point of studies/fast_recipe.toml's search (the trial it chose), and
that search covers every part of the recipe the issue names."""

from __future__ import annotations

from pathlib import Path

from ablate.config import parse_run
from ablate.run_file import load_run_file
from ablate.study_config import load_study_file

ROOT = Path(__file__).resolve().parents[1]
FIDELITY = {"epochs", "steps", "subset", "sample_every", "grid_size"}


def test_the_shipped_recipe_is_a_point_of_the_study_it_was_chosen_by():
    """Every setting of configs/fast.toml is the study's base, a component's default, or a
    value the study's search offers: the recipe is one the study could have trained."""
    chosen = load_run_file(ROOT / "configs" / "fast.toml").run.to_dict()
    spec = load_study_file(ROOT / "studies" / "fast_recipe.toml")
    base = spec.base.to_dict()
    offered = {p.key: p for p in spec.space.params}
    for key in chosen.keys() - FIDELITY:
        if chosen[key] == base[key]:
            continue
        if not isinstance(chosen[key], dict):
            assert offered[f"run.{key}"].contains(chosen[key]), (key, chosen[key])
            continue
        name = chosen[key]["name"]  # a component: its plugin, then that plugin's parameters
        if name != base[key]["name"]:
            assert offered[f"run.{key}.name"].contains(name), (key, name)
        reference = base[key] if name == base[key]["name"] else \
            parse_run({key: {"name": name}}, source="defaults").to_dict()[key]
        for field, value in chosen[key].items():
            if value != reference[field]:
                searched = offered.get(f"run.{key}.{name}.{field}") or \
                    offered.get(f"run.{key}.{field}")
                assert searched is not None and searched.contains(value), (key, field, value)


def test_the_study_searches_formulation_width_optimiser_schedule_batch_ema_and_sampler():
    spec = load_study_file(ROOT / "studies" / "fast_recipe.toml")
    keys = {p.key for p in spec.space.params}
    assert {"run.degradation.name", "run.decoder.base_width", "run.optimizer.name",
            "run.lr_schedule.name", "run.batch_size", "run.ema.decay",
            "run.degradation.edm.sample_steps", "run.degradation.gaussian.sampler"} <= keys
    assert spec.pruner.name == "successive-halving"


def test_the_recipe_says_which_trial_it_is_and_how_it_was_measured():
    text = (ROOT / "configs" / "fast.toml").read_text(encoding="utf-8")
    assert "studies/fast_recipe.toml" in text and "benchmarks/time_to_quality.py" in text
