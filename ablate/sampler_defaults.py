"""The sampler ``ablate sample`` and ``ablate evaluate`` use unless told otherwise.

A run's own default often visits all T steps (the coursework's ancestral sampler does), so its
cost grows with T: 1000 network evaluations per image batch at T = 1000. The command-line
default instead visits ``STEPS`` evenly spaced steps, whatever T is. This module imports
nothing heavy, so the commands' ``--help`` can quote it.
"""

from __future__ import annotations

from collections.abc import Sequence

SAMPLER = "ancestral"
"""The default sampler where the degradation has it (respaced ancestral sampling with the
beta-tilde variance scored best of the cheap samplers in benchmarks/samplers.py); elsewhere
the degradation's own default."""

STEPS = 50
"""Sampling steps of the default, at most T."""

HELP = (f"default: {SAMPLER} (or the degradation's own sampler where it has no {SAMPLER}) on "
        f"{STEPS} evenly spaced steps, so the cost does not grow with T")


def choose(available: Sequence[str], T: int, sampler: str | None,
           steps: int | None) -> tuple[str | None, int]:
    """The sampler (None: the degradation's default) and the number of steps to use."""
    if sampler is None and SAMPLER in available:
        sampler = SAMPLER
    return sampler, min(STEPS, T) if steps is None else steps
