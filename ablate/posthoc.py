"""Post-hoc EMA (Karras et al. 2024, EDM2, section 3 and appendix C): profiles and reconstruction.

A power-function EMA with exponent gamma averages the weights theta(tau) of steps tau <= t with
the profile p_{t,gamma}(tau) = (gamma + 1) tau^gamma / t^(gamma + 1) (EDM2 section 3.1). Updating
it once per step with beta_gamma(t) = (1 - 1/t)^(gamma + 1) gives step tau exactly the profile's
mass on (tau - 1, tau]. Its width relative to the training time is sigma_rel. Training tracks a
few such averages and stores snapshots of them; any other sigma_rel is then the combination of
stored averages whose profile is closest to the wanted one in L2 (appendix C.3), so an
EMA-length ablation costs one training run.

This module also owns the tensor layout the ``power`` strategy uses in checkpoints, so that
``ablate ema-reconstruct`` rewrites a checkpoint without rebuilding its model:

- ``sample.<key>``: the weights ``sampling_model()`` uses (a full model state dict);
- ``track.<k>.<param>``: the live average of tracked profile k;
- ``snap.<i>.<k>.<param>``: snapshot i of profile k;
- ``posthoc.sigma_rels``, ``posthoc.snapshot_steps``, ``posthoc.step``,
  ``posthoc.snapshot_every``: the bookkeeping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ablate.checkpoint import load_checkpoint, prefixed, save_checkpoint, unprefixed
from ablate.errors import CheckpointError, ConfigError

Weights = dict[str, torch.Tensor]

UNIFORM_SIGMA_REL = 1 / math.sqrt(12)
"""sigma_rel of gamma = 0, the plain average of every step so far: the widest power profile."""


def power_beta(step: int, gamma: float) -> float:
    """beta_gamma(t) = (1 - 1/t)^(gamma + 1), the decay of update ``step`` (1-based; 0 at t = 1,
    so the first update copies the weights). EDM2 section 3.1."""
    return (1.0 - 1.0 / step) ** (gamma + 1.0)


def sigma_rel_of(gamma: float) -> float:
    """sigma_rel = sqrt(gamma + 1) / ((gamma + 2) sqrt(gamma + 3)), the standard deviation of
    the profile relative to its length (EDM2 section 3.1)."""
    return math.sqrt(gamma + 1) / ((gamma + 2) * math.sqrt(gamma + 3))


def gamma_of(sigma_rel: float) -> float:
    """Inverse of ``sigma_rel_of``: the largest root of
    gamma^3 + 7 gamma^2 + (16 - s^-2) gamma + 12 - s^-2 with s = sigma_rel.

    Only 0 < sigma_rel < 1/sqrt(12) has a gamma >= 0; wider profiles do not exist.
    """
    if not 0 < sigma_rel < UNIFORM_SIGMA_REL:
        raise ValueError(f"sigma_rel must lie in (0, {UNIFORM_SIGMA_REL:.4f}), got {sigma_rel}")
    inv_sq = sigma_rel ** -2
    roots = np.roots([1.0, 7.0, 16.0 - inv_sq, 12.0 - inv_sq])
    return float(roots[np.abs(roots.imag) < 1e-9].real.max())


def profile_inner(t_a: np.ndarray, gamma_a: np.ndarray, t_b: np.ndarray,
                  gamma_b: np.ndarray) -> np.ndarray:
    """<p_a, p_b>, the integral of the product of two power profiles (appendix C.3).

    Written with the ratio of the two end times so that large gammas neither overflow nor
    underflow: (g_a+1)(g_b+1)/(g_a+g_b+1) * (t_min/t_max)^(gamma of the longer one) / t_max.
    """
    t_a, gamma_a, t_b, gamma_b = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (t_a, gamma_a, t_b, gamma_b)))
    a_first = t_a <= t_b
    t_max = np.where(a_first, t_b, t_a)
    ratio = np.where(a_first, t_a / t_b, t_b / t_a)
    exponent = np.where(a_first, gamma_b, gamma_a)
    return ((gamma_a + 1) * (gamma_b + 1) / (gamma_a + gamma_b + 1)
            * ratio ** exponent / t_max)


def coefficients(steps: Sequence[int], gammas: Sequence[float], target_step: int,
                 target_gamma: float) -> np.ndarray:
    """Weights x of the stored averages whose combined profile best fits the target one.

    Minimises ||sum_i x_i p_i - p_target||^2 (appendix C.3: A x = b with A_ij = <p_i, p_j>,
    b_i = <p_i, p_target>) subject to sum_i x_i = 1, so the result stays an average: a constant
    parameter reconstructs to itself (up to float rounding). Solved by least squares on the KKT
    system, which tolerates the near-duplicate profiles that dense snapshots give.
    """
    t = np.asarray(steps, dtype=np.float64)
    g = np.asarray(gammas, dtype=np.float64)
    n = len(t)
    kkt = np.zeros((n + 1, n + 1))
    kkt[:n, :n] = profile_inner(t[:, None], g[:, None], t[None, :], g[None, :])
    kkt[:n, n] = kkt[n, :n] = 1.0
    rhs = np.append(profile_inner(t, g, float(target_step), target_gamma), 1.0)
    scale = np.sqrt(np.diag(kkt)[:n])
    kkt[:n, :] /= scale[:, None]
    kkt[:, :n] /= scale[None, :]
    rhs[:n] /= scale
    solution = np.linalg.lstsq(kkt, rhs, rcond=1e-13)[0]
    return solution[:n] / scale


def profile_error(steps: Sequence[int], gammas: Sequence[float], x: np.ndarray,
                  target_step: int, target_gamma: float) -> float:
    """||sum_i x_i p_i - p_target|| / ||p_target||: how well the reconstruction fits."""
    t = np.asarray(steps, dtype=np.float64)
    g = np.asarray(gammas, dtype=np.float64)
    gram = profile_inner(t[:, None], g[:, None], t[None, :], g[None, :])
    cross = profile_inner(t, g, float(target_step), target_gamma)
    target = float(profile_inner(target_step, target_gamma, target_step, target_gamma))
    squared = x @ gram @ x - 2 * x @ cross + target
    return math.sqrt(max(squared, 0.0) / target)


@dataclass
class PosthocState:
    """The averages a post-hoc EMA keeps: live tracked profiles plus their snapshots."""

    sigma_rels: tuple[float, ...]
    snapshot_every: int
    step: int = 0
    tracks: list[Weights] = field(default_factory=list)
    snapshot_steps: list[int] = field(default_factory=list)
    snapshots: list[list[Weights]] = field(default_factory=list)  # [snapshot][profile]
    gammas: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.gammas = [gamma_of(s) for s in self.sigma_rels]

    def basis(self) -> tuple[list[int], list[float], list[Weights]]:
        """Every stored average with its end time and gamma; the live ones unless just saved."""
        steps, basis_gammas, weights = [], [], []
        for step, profiles in zip(self.snapshot_steps, self.snapshots, strict=True):
            for gamma, snap in zip(self.gammas, profiles, strict=True):
                steps.append(step)
                basis_gammas.append(gamma)
                weights.append(snap)
        if self.step not in self.snapshot_steps:
            for gamma, track in zip(self.gammas, self.tracks, strict=True):
                steps.append(self.step)
                basis_gammas.append(gamma)
                weights.append(track)
        return steps, basis_gammas, weights

    def reconstruct(self, sigma_rel: float) -> tuple[Weights, float]:
        """The average with profile width ``sigma_rel`` at the current step, and its
        ``profile_error``. Accumulates in at least float32 on the weights' own device."""
        if self.step == 0:
            raise ValueError("nothing to reconstruct before the first training step")
        steps, gammas, weights = self.basis()
        target_gamma = gamma_of(sigma_rel)
        x = coefficients(steps, gammas, self.step, target_gamma)
        out: Weights = {}
        for name, first in weights[0].items():
            dtype = torch.promote_types(first.dtype, torch.float32)
            accumulator = torch.zeros_like(first, dtype=dtype)
            for coefficient, average in zip(x.tolist(), weights, strict=True):
                accumulator.add_(average[name], alpha=coefficient)
            out[name] = accumulator.to(first.dtype)
        return out, profile_error(steps, gammas, x, self.step, target_gamma)

    def to_state(self) -> dict[str, torch.Tensor]:
        """The layout described in the module docstring (without ``sample.``)."""
        state = {
            "posthoc.sigma_rels": torch.tensor(self.sigma_rels, dtype=torch.float64),
            "posthoc.snapshot_steps": torch.tensor(self.snapshot_steps, dtype=torch.int64),
            "posthoc.step": torch.tensor(self.step, dtype=torch.int64),
            "posthoc.snapshot_every": torch.tensor(self.snapshot_every, dtype=torch.int64),
        }
        for k, track in enumerate(self.tracks):
            state.update(prefixed(f"track.{k}", track))
        for i, profiles in enumerate(self.snapshots):
            for k, snap in enumerate(profiles):
                state.update(prefixed(f"snap.{i}.{k}", snap))
        return state

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> PosthocState:
        """Inverse of ``to_state``; a KeyError names the first missing tensor."""
        sigma_rels = tuple(state["posthoc.sigma_rels"].tolist())
        steps = [int(s) for s in state["posthoc.snapshot_steps"].tolist()]
        tracks = [_required(unprefixed(f"track.{k}", state), f"track.{k}")
                  for k in range(len(sigma_rels))]
        snapshots = [[_required(unprefixed(f"snap.{i}.{k}", state), f"snap.{i}.{k}")
                      for k in range(len(sigma_rels))] for i in range(len(steps))]
        return cls(sigma_rels, int(state["posthoc.snapshot_every"]), int(state["posthoc.step"]),
                   tracks, steps, snapshots)


def _required(weights: Weights, prefix: str) -> Weights:
    if not weights:
        raise KeyError(f"{prefix}.*")
    return weights


@dataclass(frozen=True)
class Reconstruction:
    """What ``rewrite_checkpoint`` did, for the command line to report."""

    step: int
    averages: int
    profile_error: float


def rewrite_checkpoint(source: Path, sigma_rel: float, target: Path) -> Reconstruction:
    """Copy a checkpoint, replacing its sampling weights by the reconstruction at ``sigma_rel``.

    Everything else (model, optimiser, tracked averages, snapshots, metadata) is kept, so the new
    file samples, evaluates and even resumes like the old one. The metadata gains a
    ``posthoc_ema`` entry saying which reconstruction it holds.
    """
    if not 0 < sigma_rel < UNIFORM_SIGMA_REL:
        raise ConfigError(f"{sigma_rel} is out of range", key="--sigma-rel",
                          hint=f"must lie in (0, {UNIFORM_SIGMA_REL:.4f}); 1/sqrt(12) is the "
                               "plain average of all steps")
    tensors, meta = load_checkpoint(source)
    averaged = unprefixed("ema", tensors)
    if "posthoc.sigma_rels" not in averaged:
        raise CheckpointError(f"{source} holds no post-hoc EMA snapshots; train with "
                              f'[run.ema] name = "power" to reconstruct EMA lengths afterwards')
    try:
        state = PosthocState.from_state(averaged)
    except KeyError as exc:
        raise CheckpointError(f"{source} has damaged post-hoc EMA state (missing "
                              f"{exc})") from None
    except ValueError as exc:
        raise CheckpointError(f"{source} has damaged post-hoc EMA state ({exc})") from None
    if state.step == 0:
        raise CheckpointError(f"{source} was saved before the first training step")
    reconstructed, error = state.reconstruct(sigma_rel)
    missing = [name for name in reconstructed if f"ema.sample.{name}" not in tensors]
    if missing:
        raise CheckpointError(f"{source} has no sampling weights for {missing[0]!r}")
    for name, value in reconstructed.items():
        tensors[f"ema.sample.{name}"] = value
    meta["posthoc_ema"] = {"sigma_rel": sigma_rel, "step": state.step, "source": str(source)}
    save_checkpoint(target, tensors, meta)
    return Reconstruction(state.step, len(state.basis()[0]), error)
