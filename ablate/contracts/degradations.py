"""The degradation contract, observed through the process API and a probe network.

A process only shows its degradation to the network: ``loss(model, x0, generator)`` feeds
``model`` the degraded images x_t with their times t/T. The probe records those inputs, which
defines the rules in the process API's own terms:

- identity at t = 0: under a schedule that has barely started (alpha_bar_t = 1 - 1e-8 t, every
  step indistinguishable from t = 0), the network is fed x_0 itself, within 1% of the data range;
- severity grows with t: under alpha_bar_t = 1 - t / (T + 1), the mean distance between x_t and
  x_0 does not fall from one band of t/T to the next and ends well above where it starts.

Formulations that draw their own noise levels (``follows_schedule = False``: EDM's sigma, flow
matching's t) are not shaped by the schedule, and may scale what the network reads (EDM's c_in),
so they are measured by the time they feed the network and a scale-free distance, 1 minus the
correlation of x_t with x_0 over pixels: the least-degraded input of a batch is that close to x_0
within 1% or within its own time, whichever is larger (a timestep sampling that seldom trains
near t = 0, such as a logit-normal one, is no violation), and the distance grows over bands of
the network's time as above.

Samplers must return finite images of the requested shape inside the data range, whatever the
network predicts (the probe predicts zeros), and the same images for the same seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from ablate.contracts.common import generator, image_shape_of, resolve, violation
from ablate.datasets import SCALINGS
from ablate.degradations import Degradation, DegradationProcess
from ablate.plugin_host import PluginHost

T = 10
"""Steps of the schedules the checks bind; the distances are measured for every t."""

BATCH = 256
"""Copies of one image passed to ``loss``: enough that every band of t/T sees many of them."""

BANDS = 5
"""Bands of t/T over which distances are averaged before comparing neighbours."""

IDENTITY_TOLERANCE = 0.01
"""Largest difference from x_0 at t = 0, as a fraction of the data range."""

MIN_GROWTH = 0.05
"""How far, as a fraction of the data range, the mean distance of x_t from x_0 must rise from
the first band of t/T to the last, for a schedule going from alpha_bar = 0.91 to 0.09."""

FALL_TOLERANCE = 0.02
"""How much, as a fraction of that rise, the distance may fall between neighbouring bands
(sampling noise of stochastic degradations)."""

SAMPLES = 3
"""Images drawn per sampler check."""


class Probe(nn.Module):
    """A stand-in network: records every (x, t) it is given and predicts ``weight * x``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.inputs: list[torch.Tensor] = []
        self.times: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        self.times.append(t.detach().clone())
        return self.weight * x


def check_degradation(name: str, *, params: Mapping[str, Any] | None = None,
                      image_shape: tuple[int, int, int] | None = None, dataset: str = "mnist",
                      device: str = "cpu", host: PluginHost | None = None) -> None:
    """Check the installed degradation ``name`` in every data scaling (see the module doc)."""
    degradation = cast(Degradation, resolve("degradation", name, params, host))
    shape = image_shape or image_shape_of(dataset, host)
    where = torch.device(device)
    for data_range in SCALINGS.values():
        x0 = _image(shape, data_range, where)
        if degradation.follows_schedule:
            _check_identity_at_zero(degradation, x0, data_range)
        process = _bind(degradation, _falling(T), data_range, where)
        _check_loss(degradation, process, x0)
        if degradation.follows_schedule:
            _check_severity_grows(degradation, process, x0, data_range)
        else:
            _check_own_noise_levels(degradation, process, x0)
        _check_samplers(degradation, process, shape, data_range, where)


def _image(shape: tuple[int, int, int], data_range: tuple[float, float],
           device: torch.device) -> torch.Tensor:
    """One image of independent uniform pixels over the range, as a batch of BATCH copies."""
    low, high = data_range
    pixels = torch.rand(shape, generator=generator(device, 1), device=device)
    return (low + (high - low) * pixels).expand(BATCH, *shape).contiguous()


def _falling(steps: int) -> torch.Tensor:
    """alpha_bar_t = 1 - t / (T + 1): from barely degraded to nearly fully degraded."""
    return 1 - torch.arange(1, steps + 1, dtype=torch.float64) / (steps + 1)


def _bind(degradation: Degradation, alpha_bar: torch.Tensor, data_range: tuple[float, float],
          device: torch.device) -> DegradationProcess:
    process = degradation.bind(alpha_bar, data_range, device)
    if not isinstance(process, DegradationProcess):
        raise violation(degradation, f"bind() must return an "
                                     f"ablate.degradations.DegradationProcess, got "
                                     f"{type(process).__name__}")
    if len(alpha_bar) != process.T:
        raise violation(degradation, f"the bound process has T = {process.T} for a schedule of "
                                     f"{len(alpha_bar)} steps")
    samplers = process.samplers
    if not (isinstance(samplers, tuple) and samplers
            and all(isinstance(s, str) for s in samplers)):
        raise violation(degradation, f"samplers must be a non-empty tuple of names, got "
                                     f"{samplers!r}")
    return process


def _observe(process: DegradationProcess, x0: torch.Tensor) -> tuple[Probe, torch.Tensor]:
    """Run ``loss`` on a fresh probe; the probe then holds what the network was fed."""
    probe = Probe().to(x0.device)
    loss = process.loss(probe, x0, generator(x0.device))
    return probe, loss


def _check_identity_at_zero(degradation: Degradation, x0: torch.Tensor,
                            data_range: tuple[float, float]) -> None:
    start = 1 - 1e-8 * torch.arange(1, T + 1, dtype=torch.float64)
    probe, _ = _observe(_bind(degradation, start, data_range, x0.device), x0)
    if not probe.inputs:
        raise violation(degradation, "loss() never calls the network")
    width = data_range[1] - data_range[0]
    worst = max(float((x - x0[:1]).abs().max()) for x in probe.inputs) / width
    if not worst <= IDENTITY_TOLERANCE:
        raise violation(degradation, f"not the identity at t = 0: with alpha_bar_t = 1 - 1e-8 t "
                                     f"the network is fed images up to {worst:.1%} of the data "
                                     f"range away from x_0 (allowed {IDENTITY_TOLERANCE:.0%}); "
                                     f"the degradation must follow the schedule's alpha_bar")


def _check_loss(degradation: Degradation, process: DegradationProcess,
                x0: torch.Tensor) -> None:
    probe, loss = _observe(process, x0)
    if not (isinstance(loss, torch.Tensor) and loss.dim() == 0 and torch.isfinite(loss)):
        raise violation(degradation, f"loss() must return a finite scalar tensor, got {loss!r}")
    loss.backward()
    if probe.weight.grad is None:
        raise violation(degradation, "loss() does not backpropagate into the network")
    times = torch.cat(probe.times)
    if not ((times >= 0) & (times <= 1)).all():
        raise violation(degradation, f"the network must be given t/T in [0, 1], got values from "
                                     f"{times.min().item():.3g} to {times.max().item():.3g}")
    repeat, again = _observe(process, x0)
    if not (torch.equal(loss.detach(), again.detach()) and _same_inputs(probe, repeat)):
        raise violation(degradation, "loss() is not reproducible: two calls with generators "
                                     "seeded alike differ (draw every random number from the "
                                     "given generator)")


def _check_severity_grows(degradation: Degradation, process: DegradationProcess,
                          x0: torch.Tensor, data_range: tuple[float, float]) -> None:
    probe, _ = _observe(process, x0)
    inputs, times = torch.cat(probe.inputs), torch.cat(probe.times)
    width = data_range[1] - data_range[0]
    distance = (inputs - x0[:1]).abs().flatten(1).mean(dim=1) / width
    band = (times * BANDS).clamp(max=BANDS - 1).long()
    means = [distance[band == b].mean().item() for b in range(BANDS) if (band == b).any()]
    growth = means[-1] - means[0]
    if not growth > MIN_GROWTH:
        raise violation(degradation, f"severity does not grow with t: the mean distance of x_t "
                                     f"from x_0 per band of t/T, as a fraction of the data range, "
                                     f"goes {_rounded(means)}")
    steps = zip(means[:-1], means[1:], strict=True)
    if any(later < earlier - FALL_TOLERANCE * growth for earlier, later in steps):
        raise violation(degradation, f"severity does not grow with t: the mean distance of x_t "
                                     f"from x_0 falls between bands of t/T: {_rounded(means)}")


def _check_own_noise_levels(degradation: Degradation, process: DegradationProcess,
                            x0: torch.Tensor) -> None:
    """Identity and growth for degradations with their own noise levels (see the module doc)."""
    probe, _ = _observe(process, x0)
    inputs, times = torch.cat(probe.inputs), torch.cat(probe.times)
    centred = inputs.flatten(1) - inputs.flatten(1).mean(dim=1, keepdim=True)
    clean = (x0[:1].flatten(1) - x0[:1].mean()).expand_as(centred)
    distance = 1 - torch.nn.functional.cosine_similarity(centred, clean, dim=1)
    least, earliest = float(distance[times.argmin()]), float(times.min())
    allowed = max(IDENTITY_TOLERANCE, earliest)
    if not least <= allowed:
        raise violation(degradation, f"not the identity at its lowest noise level: the input fed "
                                     f"at the smallest time ({earliest:.3g}) has a correlation "
                                     f"{1 - least:.3f} with x_0 (at least {1 - allowed:.3f} "
                                     f"needed)")
    band = (times * BANDS).clamp(max=BANDS - 1).long()
    means = [distance[band == b].mean().item() for b in range(BANDS) if (band == b).any()]
    growth = means[-1] - means[0]
    steps = zip(means[:-1], means[1:], strict=True)
    if not growth > MIN_GROWTH or any(later < earlier - FALL_TOLERANCE * growth
                                      for earlier, later in steps):
        raise violation(degradation, f"severity does not grow with the network's time: 1 - the "
                                     f"correlation of x_t with x_0 per band of time goes "
                                     f"{_rounded(means)}")


def _check_samplers(degradation: Degradation, process: DegradationProcess,
                    image_shape: tuple[int, int, int], data_range: tuple[float, float],
                    device: torch.device) -> None:
    shape = (SAMPLES, *image_shape)
    low, high = data_range
    probe = Probe().to(device)
    for sampler in process.samplers:
        for steps in (None, 2):
            label = f"sampler {sampler!r} with steps={steps}"
            images = process.sample(probe, shape, generator(device, 3), sampler=sampler,
                                    steps=steps)
            if not (isinstance(images, torch.Tensor) and images.shape == shape):
                got = getattr(images, "shape", type(images).__name__)
                raise violation(degradation, f"{label} must return a tensor of shape {shape}, "
                                             f"got {got}")
            if not torch.isfinite(images).all():
                raise violation(degradation, f"{label} returns non-finite values")
            if not ((images >= low) & (images <= high)).all():
                raise violation(degradation, f"{label} returns values from "
                                             f"{images.min().item():.3g} to "
                                             f"{images.max().item():.3g}, outside the data range "
                                             f"{data_range}: clamp the result, the network may "
                                             f"predict anything")
            again = process.sample(probe, shape, generator(device, 3), sampler=sampler,
                                   steps=steps)
            if not torch.equal(images, again):
                raise violation(degradation, f"{label} is not reproducible: two draws with "
                                             f"generators seeded alike differ (draw every "
                                             f"random number from the given generator)")
            if not probe.training:
                raise violation(degradation, f"{label} leaves the network in eval mode; restore "
                                             f"the mode it had")


def _same_inputs(first: Probe, second: Probe) -> bool:
    return (len(first.inputs) == len(second.inputs)
            and all(torch.equal(a, b) for a, b in zip(first.inputs, second.inputs, strict=True))
            and all(torch.equal(a, b) for a, b in zip(first.times, second.times, strict=True)))


def _rounded(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"
