"""What pruning saves: a study file run twice, as written and with ``pruner = "none"``.

Both variants run the same number of trials (the file's ``trials``; its ``timeout`` is dropped so
that neither stops early) into their own folders. With a sampler that ignores the objective
(``qmc``, ``grid``, ``random``) both propose the same points with the same seeds, so the only
difference is the epochs that pruning skipped. Prints each variant's total trial seconds and its
best configuration, the saving (1 - pruned / unpruned; target >= 0.5) and whether both chose the
same best configuration.

    python benchmarks/pruning.py studies/beta_range.toml [--output DIR] [--n-trials N]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console

from ablate.study import duration, run_study
from ablate.study_config import Algorithm, NoPruning, StudySpec, load_study_file
from ablate.study_display import StudyDisplay

ADAPTIVE_SAMPLERS = ("tpe", "gp", "cmaes")


def variant(spec: StudySpec, folder: Path, *, pruned: bool) -> StudySpec:
    """The study in its own folder and database, with or without its pruner, no time limit."""
    name = f"{spec.name}-{'pruned' if pruned else 'unpruned'}"
    out = folder / name
    return dataclasses.replace(
        spec, name=name, folder=out, storage=f"sqlite:///{out / 'study.db'}", timeout=None,
        pruner=spec.pruner if pruned else Algorithm("none", NoPruning()))


def summary(spec: StudySpec, study: optuna.Study) -> dict:
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial
    return {
        "trials": len(trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "seconds": sum(duration(t) for t in trials),
        "train_seconds": sum(t.user_attrs.get("train_seconds", 0.0) for t in trials),
        "best": best.number,
        "value": best.value,
        "params": dict(best.params),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_file", type=Path)
    parser.add_argument("--output", type=Path, default=None,
                        help="keep both studies here (default: a temporary folder)")
    parser.add_argument("--n-trials", type=int, default=None,
                        help="trials of each variant (default: the file's trials)")
    args = parser.parse_args()
    spec = load_study_file(args.study_file, trials=args.n_trials)
    if spec.trials is None:
        parser.error(f"{args.study_file} has no [study] trials; give --n-trials N")
    if spec.pruner.name == "none":
        parser.error(f"{args.study_file} does not prune; nothing to compare")
    if spec.sampler.name in ADAPTIVE_SAMPLERS:
        print(f"note: the {spec.sampler.name} sampler adapts to the values it sees, so the two "
              f"variants may propose different points")
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.output or Path(tmp)
        results = {}
        for pruned in (True, False):
            run = variant(spec, root, pruned=pruned)
            results[pruned] = summary(run, run_study(run, StudyDisplay(console)))
    metric = spec.objectives[0].metric
    for pruned, label in ((True, f"pruner {spec.pruner.name}"), (False, "no pruning")):
        r = results[pruned]
        print(f"{label}: {r['trials']} trials ({r['pruned']} pruned), {r['seconds']:.0f} s of "
              f"trial time ({r['train_seconds']:.0f} s training); best trial {r['best']} "
              f"{metric} {r['value']:.4g} at {r['params']}")
    saving = 1.0 - results[True]["seconds"] / results[False]["seconds"]
    same = results[True]["params"] == results[False]["params"]
    print(f"saving: {saving:.1%} of trial time (target >= 50%); same best configuration: "
          f"{'yes' if same else 'no'}")


if __name__ == "__main__":
    main()
