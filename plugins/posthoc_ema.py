"""EMA strategy ``power``: EDM2 power-function averages with snapshots for post-hoc EMA.

Training tracks one power-function average per entry of ``sigma_rels`` and snapshots all of
them every ``snapshot_every`` steps; ``ablate ema-reconstruct`` (or ``sigma_rel`` here, for the
grids drawn during training) then yields the average of any width from that one run. The maths
and the checkpoint layout live in ``ablate.posthoc``.

The store is bounded: at most ``max_snapshots`` snapshot times are kept (each holding one copy of
the parameters per tracked width). When one more arrives, every other snapshot is dropped and the
interval doubles, so the snapshots keep spanning the whole run, ever more sparsely. They are part
of ``state_dict`` and therefore of every checkpoint, which survive a resume.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

import ablate
from ablate.checkpoint import unprefixed
from ablate.components import param
from ablate.ema import Averager, EmaStrategy
from ablate.posthoc import UNIFORM_SIGMA_REL, PosthocState, Weights, power_beta


@dataclass(frozen=True)
class PowerEma(EmaStrategy):
    """EDM2 power-function EMA: tracks two widths, snapshots them, reconstructs any width."""

    name = "power"
    sigma_rels: tuple[float, ...] = param(
        (0.05, 0.10), "relative widths of the tracked averages (EDM2 used 0.05 and 0.10)")
    sigma_rel: float = param(
        0.05, "width sampled with during training; any value, reconstructed from the tracked ones",
        gt=0, lt=UNIFORM_SIGMA_REL)
    snapshot_every: int = param(250, "steps between snapshots of the tracked averages", ge=1)
    max_snapshots: int = param(
        32, "snapshots kept: when exceeded, every other one is dropped and the interval doubles; "
            "memory is max_snapshots x len(sigma_rels) copies of the weights", ge=2)

    def validate(self) -> None:
        if not self.sigma_rels:
            raise ValueError("sigma_rels must name at least one width to track")
        for value in self.sigma_rels:
            if not 0 < value < UNIFORM_SIGMA_REL:
                raise ValueError(f"each of sigma_rels must lie in (0, {UNIFORM_SIGMA_REL:.4f}), "
                                 f"got {value}")
        if len(set(self.sigma_rels)) != len(self.sigma_rels):
            raise ValueError(f"sigma_rels must be distinct, got {list(self.sigma_rels)}")

    def build(self, model: nn.Module) -> Averager:
        return PowerAverager(model, self)


class PowerAverager(Averager):
    """The tracked averages and their snapshots; the sampling weights are rebuilt on demand."""

    def __init__(self, model: nn.Module, strategy: PowerEma) -> None:
        self.sigma_rel = strategy.sigma_rel
        self.max_snapshots = strategy.max_snapshots
        self.sample = copy.deepcopy(model).requires_grad_(False)
        self.state = PosthocState(strategy.sigma_rels, strategy.snapshot_every,
                                  tracks=[_copy(model) for _ in strategy.sigma_rels])
        self._stale = False

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        live = [p.detach() for p in model.parameters()]
        for gamma, track in zip(self.state.gammas, self.state.tracks, strict=True):
            torch._foreach_lerp_(list(track.values()), live, 1.0 - power_beta(step, gamma))
        for mine, theirs in zip(self.sample.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)
        self.state.step = step
        self._stale = True
        if step % self.state.snapshot_every == 0:
            self._snapshot(step)

    def _snapshot(self, step: int) -> None:
        """Store the tracked averages; thin the store to every other snapshot when it is full."""
        state = self.state
        state.snapshot_steps.append(step)
        state.snapshots.append([{n: t.clone() for n, t in track.items()}
                                for track in state.tracks])
        if len(state.snapshot_steps) > self.max_snapshots:
            state.snapshot_every *= 2
            keep = [i for i, s in enumerate(state.snapshot_steps)
                    if s % state.snapshot_every == 0]
            state.snapshot_steps = [state.snapshot_steps[i] for i in keep]
            state.snapshots = [state.snapshots[i] for i in keep]

    @torch.no_grad()
    def sampling_model(self) -> nn.Module:
        if self._stale:
            weights, _ = self.state.reconstruct(self.sigma_rel)
            parameters = dict(self.sample.named_parameters())
            torch._foreach_copy_([parameters[n] for n in weights], list(weights.values()))
            self._stale = False
        return self.sample

    def state_dict(self) -> dict[str, torch.Tensor]:
        sample = {f"sample.{k}": v for k, v in self.sampling_model().state_dict().items()}
        return {**sample, **self.state.to_state()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore; a KeyError or RuntimeError says what does not fit this model."""
        loaded = PosthocState.from_state(state)
        if loaded.sigma_rels != self.state.sigma_rels:
            raise RuntimeError(f"tracked sigma_rels {list(loaded.sigma_rels)} differ from the "
                               f"configured {list(self.state.sigma_rels)}")
        self.sample.load_state_dict(unprefixed("sample", state))
        reference = self.state.tracks[0]
        for k, track in enumerate(self.state.tracks):
            _check_fits(loaded.tracks[k], reference, f"track.{k}")
            torch._foreach_copy_(list(track.values()), [loaded.tracks[k][n] for n in track])
        loaded.tracks = self.state.tracks
        for i, profiles in enumerate(loaded.snapshots):
            for k, snap in enumerate(profiles):
                _check_fits(snap, reference, f"snap.{i}.{k}")
                profiles[k] = {n: snap[n].to(device=t.device, dtype=t.dtype)
                               for n, t in reference.items()}
        self.state = loaded
        self._stale = False


def _copy(model: nn.Module) -> Weights:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _check_fits(weights: Weights, reference: Weights, where: str) -> None:
    if weights.keys() != reference.keys():
        raise RuntimeError(f"{where} holds parameters {sorted(set(weights) ^ set(reference))} "
                           f"that this model does not have or lacks")
    for name, tensor in weights.items():
        if tensor.shape != reference[name].shape:
            raise RuntimeError(f"{where}.{name} has shape {tuple(tensor.shape)}, the model "
                               f"{tuple(reference[name].shape)}")


@ablate.hookimpl
def register_ema_strategies(register) -> None:
    register(PowerEma)
