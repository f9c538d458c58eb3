"""The ``flow_matching`` degradation: the linear path of rectified flow with a velocity target.

Path: x_t = (1 - t) x_0 + t eps, eps ~ N(0, I), t = 0 the data and t = 1 the noise, in the
time direction of Esser et al. (2024, Sec. 2): the straight path of rectified flow (Liu et al.
2022) and the optimal-transport path of flow matching with sigma_min = 0 (Lipman et al. 2023),
both written there with t running from the noise to the data. Target: the path's velocity
v = dx_t / dt = eps - x_0; the loss is E_t ||v_theta(x_t, t) - v||^2, the conditional flow
matching loss. Training t is uniform or logit-normal, t = sigmoid(m + s n), n ~ N(0, 1)
(Esser et al. 2024, Sec. 3.1). Sampling integrates the ODE dx / dt = v_theta(x, t) from
t = 1 down to t = 0 on N equal steps with Euler, the explicit midpoint rule or Heun's method
(N, 2N and 2N network evaluations).

The run's schedule and T do not shape this degradation; the network reads t itself, which is
already the decoders' [0, 1] time. Written by hand (three lines per solver): diffusers has the
Euler step (``FlowMatchEulerDiscreteScheduler``), which the tests compare with on identical
network outputs, but no midpoint or Heun for flows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

import ablate
from ablate.components import param
from ablate.degradations import Degradation, DegradationProcess
from ablate.errors import ConfigError

SAMPLERS = ("euler", "midpoint", "heun")


@dataclass(frozen=True)
class FlowMatching(Degradation):
    """x_t = (1 - t) x_0 + t eps; predict the velocity eps - x_0 (rectified flow)."""

    name = "flow_matching"
    follows_schedule = False
    timestep_sampling: Literal["uniform", "logit_normal"] = param(
        "uniform", "training t: uniform on (0, 1), or logit_normal: t = sigmoid(m + s n) "
        "(Esser et al. 2024)")
    logit_mean: float = param(0.0, "m of the logit_normal timestep sampling")
    logit_std: float = param(1.0, "s of the logit_normal timestep sampling", gt=0)
    sampler: Literal["euler", "midpoint", "heun"] = param(
        "euler", "default ODE sampler: euler, midpoint or heun")
    sample_steps: int = param(20, "N, the number of equal ODE steps from t = 1 to 0", ge=1)

    def bind(self, alpha_bar: torch.Tensor, data_range: tuple[float, float],
             device: torch.device) -> DegradationProcess:
        return FlowMatchingProcess(self, len(alpha_bar), data_range, device)


def linear_path(x0: torch.Tensor, eps: torch.Tensor,
                t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, v): x_t = (1 - t) x_0 + t eps and its velocity v = eps - x_0, t broadcastable."""
    return (1 - t) * x0 + t * eps, eps - x0


def ode_times(steps: int) -> list[float]:
    """t_0 = 1 > t_1 > ... > t_N = 0, equally spaced: t_i = 1 - i / N."""
    if steps < 1:
        raise ConfigError(f"flow matching sampling needs at least 1 step, got {steps}")
    return [1 - i / steps for i in range(steps + 1)]


def integrate(velocity: Callable[[torch.Tensor, float], torch.Tensor], x: torch.Tensor,
              times: list[float], sampler: str) -> torch.Tensor:
    """Solve dx / dt = velocity(x, t) over ``times`` (t given as a float per call)."""
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        h = t_next - t  # negative: from the noise towards the data
        v = velocity(x, t)
        if sampler == "euler":  # x_{i+1} = x_i + h v(x_i, t_i)
            x = x + h * v
        elif sampler == "midpoint":  # x_{i+1} = x_i + h v(x_i + h/2 v(x_i, t_i), t_i + h/2)
            x = x + h * velocity(x + 0.5 * h * v, t + 0.5 * h)
        else:  # Heun: x_{i+1} = x_i + h/2 (v(x_i, t_i) + v(x_i + h v(x_i, t_i), t_{i+1}))
            x = x + 0.5 * h * (v + velocity(x + h * v, t_next))
    return x


class FlowMatchingProcess(DegradationProcess):
    """Flow matching on a device; T is the run's, only to satisfy the family's API."""

    samplers = SAMPLERS

    def __init__(self, settings: FlowMatching, T: int, data_range: tuple[float, float],
                 device: torch.device) -> None:
        self.settings = settings
        self.T = T
        self.data_range = data_range
        self.device = device
        self.samplers = (settings.sampler, *(s for s in SAMPLERS if s != settings.sampler))

    def training_times(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """t of shape (batch,) from the timestep sampling of the settings."""
        s = self.settings
        if s.timestep_sampling == "uniform":
            return torch.rand(batch, device=self.device, generator=generator)
        n = torch.randn(batch, device=self.device, generator=generator)
        return torch.sigmoid(s.logit_mean + s.logit_std * n)  # logit-normal (Esser et al. Sec. 3.1)

    def loss(self, model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        t = self.training_times(x0.shape[0], generator)
        eps = torch.randn(x0.shape, device=x0.device, generator=generator)
        x_t, v = linear_path(x0, eps, t.view(-1, *[1] * (x0.dim() - 1)))
        return F.mse_loss(model(x_t, t), v)

    @torch.no_grad()
    def sample(self, model: nn.Module, shape: tuple[int, ...], generator: torch.Generator, *,
               sampler: str | None = None, steps: int | None = None) -> torch.Tensor:
        name = self._sampler(sampler)
        times = ode_times(self.settings.sample_steps if steps is None else steps)
        was_training = model.training
        model.eval()
        x = torch.randn(shape, device=self.device, generator=generator)  # x_1 = eps

        def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
            return model(x, torch.full((x.shape[0],), t, device=x.device))

        x = integrate(velocity, x, times, name)
        model.train(was_training)
        return x.clamp(*self.data_range)

    def _sampler(self, sampler: str | None) -> str:
        if sampler is None:
            return self.samplers[0]
        if sampler not in self.samplers:
            raise ConfigError(f"the flow_matching degradation has no sampler {sampler!r}",
                              hint=f"its samplers: {', '.join(self.samplers)}")
        return sampler


@ablate.hookimpl
def register_degradations(register) -> None:
    register(FlowMatching)
