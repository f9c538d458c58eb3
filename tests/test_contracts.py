"""The contract kit: every built-in keeps its family's contract, and each rule catches a breach."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import ablate
from ablate.components import param
from ablate.contracts import CHECKS, ContractError
from ablate.datasets import Dataset, ImageData
from ablate.decoders import Decoder
from ablate.degradations import Degradation, DegradationProcess
from ablate.ema import Averager, EmaStrategy
from ablate.metrics import Estimator, Metric, MetricKey
from ablate.plugin_host import PluginHost, load_host
from ablate.registry import FAMILIES
from ablate.schedules import NoiseSchedule
from ablate.testing import (
    check_component,
    check_dataset,
    check_decoder,
    check_degradation,
    check_ema,
    check_metric,
    check_schedule,
    contract_tests,
)

test_builtin_component_keeps_its_contract = contract_tests("ablate")

SHAPE = (1, 8, 8)


def host_with(*components: type) -> PluginHost:
    """A host without entry points that knows only ``components``."""

    class Plugin:
        @ablate.hookimpl
        def register_schedules(self, register):
            self._register(register, NoiseSchedule)

        @ablate.hookimpl
        def register_decoders(self, register):
            self._register(register, Decoder)

        @ablate.hookimpl
        def register_degradations(self, register):
            self._register(register, Degradation)

        @ablate.hookimpl
        def register_ema_strategies(self, register):
            self._register(register, EmaStrategy)

        @ablate.hookimpl
        def register_datasets(self, register):
            self._register(register, Dataset)

        @ablate.hookimpl
        def register_metrics(self, register):
            self._register(register, Metric)

        def _register(self, register, base):
            for component in components:
                if issubclass(component, base):
                    register(component)

    return load_host([("test", Plugin())], use_entry_points=False)


def test_every_family_has_a_contract():
    assert set(CHECKS) == set(FAMILIES)


def test_unknown_component_names_the_closest_installed_one():
    with pytest.raises(ContractError, match="unknown schedule 'cosin'.*did you mean 'cosine'"):
        check_schedule("cosin")


def test_parameters_are_validated_before_checking():
    with pytest.raises(ContractError, match="cannot be built with parameters"):
        check_schedule("linear", params={"beta_min": 0.5, "beta_max": 0.1})


def test_check_component_dispatches_on_the_family():
    check_component("schedule", "cosine", params={"s": 0.02})
    with pytest.raises(ContractError, match="no contract is defined for family 'widget'"):
        check_component("widget", "cosine")


def test_fixture_is_the_generic_check(ablate_contract):
    assert ablate_contract is check_component


def test_contract_tests_for_an_unknown_distribution_fail_saying_why():
    test = contract_tests("ablate-not-installed")
    with pytest.raises(ContractError, match="registered no components: is it installed"):
        test("", "")


# --- schedules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rising(NoiseSchedule):
    """alpha_bar rises at the end, so the last beta is negative: not a schedule."""

    name = "rising"

    def raw_alpha_bar(self, T):
        alpha_bar = torch.linspace(0.9, 0.1, T, dtype=torch.float64)
        alpha_bar[-1] = 0.95
        return alpha_bar


@dataclass(frozen=True)
class Inconsistent(NoiseSchedule):
    """Defines betas and alpha_bar that do not match."""

    name = "inconsistent"

    def raw_betas(self, T):
        return torch.full((T,), 0.01, dtype=torch.float64)

    def raw_alpha_bar(self, T):
        return torch.linspace(0.9, 0.1, T, dtype=torch.float64)


@dataclass(frozen=True)
class Undocumented(NoiseSchedule):
    """A parameter without help text."""

    name = "undocumented"
    beta: float = 0.01

    def raw_betas(self, T):
        return torch.full((T,), self.beta, dtype=torch.float64)


def test_schedule_whose_alpha_bar_rises_is_rejected():
    with pytest.raises(ContractError, match=r"'rising': at T=2 beta_t must lie in \(0, 1\)"):
        check_schedule("rising", host=host_with(Rising))


def test_schedule_whose_betas_and_alpha_bar_disagree_is_rejected():
    with pytest.raises(ContractError, match="alpha_bar_t must equal prod"):
        check_schedule("inconsistent", host=host_with(Inconsistent))


def test_parameter_without_help_is_rejected():  # at registration already: the plugin is broken
    with pytest.raises(ContractError, match="is broken: schedule 'undocumented': parameter "
                                            "'beta' has no help"):
        check_schedule("undocumented", host=host_with(Undocumented))


# --- decoders --------------------------------------------------------------------------------


class Network(nn.Module):
    def __init__(self, channels: int, *, uses_time: bool, zero_output: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.time = nn.Linear(1, 4)
        self.out = nn.Conv2d(4, channels, 3, padding=1)
        self.uses_time = uses_time
        if zero_output:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x, t):
        h = self.conv(x) + self.time(t[:, None] * self.uses_time)[:, :, None, None]
        return self.out(torch.relu(h))


@dataclass(frozen=True)
class TimeBlind(Decoder):
    """Multiplies t by zero before using it."""

    name = "time-blind"

    def build(self, channels, image_size):
        return Network(channels, uses_time=False)


@dataclass(frozen=True)
class ZeroInit(Decoder):
    """Output layer starts at zero, as in ADM and EDM."""

    name = "zero-init"

    def build(self, channels, image_size):
        return Network(channels, uses_time=True, zero_output=True)


class Crop(Network):
    def forward(self, x, t):
        return super().forward(x, t)[..., 1:, 1:]


@dataclass(frozen=True)
class Cropping(Decoder):
    """Returns an image one pixel smaller."""

    name = "cropping"

    def build(self, channels, image_size):
        return Crop(channels, uses_time=True)


@dataclass(frozen=True)
class Timeless(Decoder):
    """forward takes no t."""

    name = "timeless"

    def build(self, channels, image_size):
        return nn.Conv2d(channels, channels, 3, padding=1)


def test_decoder_that_ignores_time_is_rejected():
    with pytest.raises(ContractError, match="'time-blind'.*does not depend on t"):
        check_decoder("time-blind", image_shape=SHAPE, host=host_with(TimeBlind))


def test_decoder_whose_output_layer_starts_at_zero_passes():
    check_decoder("zero-init", image_shape=SHAPE, host=host_with(ZeroInit))


def test_decoder_changing_the_image_shape_is_rejected():
    with pytest.raises(ContractError, match=r"shaped like x \(2, 1, 8, 8\), got \(2, 1, 7, 7\)"):
        check_decoder("cropping", image_shape=SHAPE, host=host_with(Cropping))


def test_decoder_whose_forward_fails_is_rejected_with_the_reason():
    with pytest.raises(ContractError, match="'timeless': forward.* raised TypeError"):
        check_decoder("timeless", image_shape=SHAPE, host=host_with(Timeless))


# --- degradations ----------------------------------------------------------------------------


class Fading(DegradationProcess):
    """x_t = sqrt(alpha_bar_t) x_0 + offset, optionally without the clamp or the generator."""

    samplers = ("fade",)

    def __init__(self, alpha_bar, data_range, device, *, offset=0.0, clamp=True,
                 seeded=True) -> None:
        self.T = len(alpha_bar)
        self.kept = alpha_bar.sqrt().float().to(device)
        self.data_range = data_range
        self.device = device
        self.offset, self.clamp, self.seeded = offset, clamp, seeded

    def loss(self, model, x0, generator):
        if not self.seeded:
            generator = None
        t = torch.randint(1, self.T + 1, (len(x0),), generator=generator, device=x0.device)
        x_t = self.kept[t - 1].view(-1, 1, 1, 1) * x0 + self.offset
        return (model(x_t, t / self.T) - x0).square().mean()

    def sample(self, model, shape, generator, *, sampler=None, steps=None):
        x = 3 * torch.randn(shape, generator=generator, device=self.device)
        return x.clamp(*self.data_range) if self.clamp else x


def degradation(name: str, **options) -> type[Degradation]:
    @dataclass(frozen=True)
    class Made(Degradation):
        """A test degradation."""

        def bind(self, alpha_bar, data_range, device):
            return Fading(alpha_bar, data_range, device, **options)

    Made.name = name
    return Made


def test_well_behaved_degradation_passes():
    check_degradation("fading", image_shape=SHAPE, host=host_with(degradation("fading")))


def test_degradation_that_is_not_the_identity_at_zero_is_rejected():
    host = host_with(degradation("offset", offset=0.2))
    with pytest.raises(ContractError, match="'offset': not the identity at t = 0"):
        check_degradation("offset", image_shape=SHAPE, host=host)


def test_degradation_whose_samples_leave_the_data_range_is_rejected():
    host = host_with(degradation("unclamped", clamp=False))
    with pytest.raises(ContractError, match="outside the data range"):
        check_degradation("unclamped", image_shape=SHAPE, host=host)


def test_degradation_drawing_from_the_global_rng_is_rejected():
    host = host_with(degradation("unseeded", seeded=False))
    with pytest.raises(ContractError, match="loss\\(\\) is not reproducible"):
        check_degradation("unseeded", image_shape=SHAPE, host=host)


@dataclass(frozen=True)
class ConstantSeverity(Degradation):
    """Degrades every image as at t = 1, whatever t is."""

    name = "constant-severity"

    def bind(self, alpha_bar, data_range, device):
        return Fading(torch.full_like(alpha_bar, float(alpha_bar[0])), data_range, device)


def test_degradation_whose_severity_does_not_grow_is_rejected():
    with pytest.raises(ContractError, match="severity does not grow with t"):
        check_degradation("constant-severity", image_shape=SHAPE,
                          host=host_with(ConstantSeverity))


# --- EMA strategies --------------------------------------------------------------------------


class Forgetful(Averager):
    """Averages correctly but keeps nothing in its state."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.average = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model, step):
        for mine, theirs in zip(self.average.parameters(), model.parameters(), strict=True):
            mine.lerp_(theirs, 1 - self.decay)
        for mine, theirs in zip(self.average.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)

    def sampling_model(self):
        return self.average

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@dataclass(frozen=True)
class ForgetfulEma(EmaStrategy):
    """An EMA whose state is empty."""

    name = "forgetful"
    decay: float = param(0.9, "decay per step", ge=0, lt=1)

    def build(self, model):
        return Forgetful(model, self.decay)


@dataclass(frozen=True)
class Shrinking(EmaStrategy):
    """Averages towards zero, so a constant does not stay constant."""

    name = "shrinking"

    def build(self, model):
        class Shrink(Forgetful):
            @torch.no_grad()
            def update(self, model, step):
                for p in self.average.parameters():
                    p.mul_(0.9)

        return Shrink(model, 0.0)


def test_ema_whose_state_is_lost_in_a_checkpoint_is_rejected():
    with pytest.raises(ContractError, match="does not round-trip through a checkpoint"):
        check_ema("forgetful", host=host_with(ForgetfulEma))


def test_ema_that_moves_a_constant_is_rejected():
    with pytest.raises(ContractError, match="an average of a constant must be that constant"):
        check_ema("shrinking", host=host_with(Shrinking))


# --- datasets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatImages(Dataset):
    """Images as floats in [0, 1]."""

    name = "float-images"

    def load(self, split):
        return ImageData(images=torch.rand(4, 1, 8, 8), labels=torch.zeros(4, dtype=torch.int64))


def test_dataset_with_float_images_is_rejected():
    with pytest.raises(ContractError, match="train images must be a uint8 tensor"):
        check_dataset("float-images", host=host_with(FloatImages))


# --- metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Noise(Dataset):
    """Random 8x8 images, for metrics that need a dataset only."""

    name = "noise"

    def load(self, split):
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        images = torch.randint(0, 256, (80, 1, 8, 8), generator=generator, dtype=torch.uint8)
        return ImageData(images=images, labels=torch.zeros(80, dtype=torch.int64))


def metric(name: str, statistic) -> type[Metric]:
    """A metric reporting ``statistic(samples, indices)`` as 'score', declared within [0, 1]."""

    @dataclass(frozen=True)
    class Made(Metric):
        """A test metric."""

        keys = (MetricKey("score", "maximize", "a test score", 0.0, 1.0),)

        def prepare(self, inputs):
            samples = inputs.samples(self.name)
            return Estimator(len(samples), lambda indices: statistic(samples, indices))

    Made.name = name
    return Made


def test_well_behaved_metric_passes():
    made = metric("mean", lambda x, i: {"score": float(x[i].mean())})
    check_metric("mean", dataset="noise", host=host_with(made, Noise))


def test_metric_outside_its_declared_range_is_rejected():
    made = metric("doubled", lambda x, i: {"score": 2 + float(x[i].mean())})
    with pytest.raises(ContractError, match=r"must lie in its declared range \[0.0, 1.0\]"):
        check_metric("doubled", dataset="noise", host=host_with(made, Noise))


def test_metric_missing_a_declared_key_is_rejected():
    made = metric("silent", lambda x, i: {"other": 0.5})
    with pytest.raises(ContractError, match=r"does not report \['score'\]"):
        check_metric("silent", dataset="noise", host=host_with(made, Noise))


def test_metric_with_non_finite_values_is_rejected():
    made = metric("undefined", lambda x, i: {"score": float("nan")})
    with pytest.raises(ContractError, match="score must be finite"):
        check_metric("undefined", dataset="noise", host=host_with(made, Noise))


def test_metric_whose_statistic_ignores_the_bootstrap_indices_is_rejected():
    made = metric("ignoring", lambda x, i: {"score": float(x.mean())})  # i unused
    with pytest.raises(ContractError, match="each interval collapses to a point"):
        check_metric("ignoring", dataset="noise", host=host_with(made, Noise))
