"""Noise schedules against their papers' closed forms, the zero-terminal-SNR rescale, validation,
and ``ablate schedules plot``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ablate.cli import app
from ablate.components import build_component
from ablate.errors import ConfigError
from ablate.plugin_host import default_host
from ablate.schedule_plot import parse_spec
from ablate.schedules import NoiseSchedule, log_snr

T = 50
t = torch.arange(1, T + 1, dtype=torch.float64)
runner = CliRunner()


def schedule(spec: str) -> NoiseSchedule:
    return parse_spec(spec, default_host())


def all_names() -> list[str]:
    return default_host().registry.names("schedule")


def test_every_built_in_schedule_is_registered():
    assert set(all_names()) >= {"linear", "scaled_linear", "cosine", "sigmoid", "quadratic",
                                "geometric", "constant"}


def test_linear_keeps_the_coursework_formula():
    betas = schedule("linear").betas(T)
    torch.testing.assert_close(betas, 1e-4 + (0.02 - 1e-4) * t / T, rtol=0, atol=1e-15)
    torch.testing.assert_close(schedule("linear").alpha_bar(T), torch.cumprod(1 - betas, 0))


def test_scaled_linear_is_linear_in_sqrt_beta_between_its_ends():
    roots = schedule("scaled_linear:beta_min=0.0001,beta_max=0.04").betas(T).sqrt()
    expected = math.sqrt(1e-4) + (math.sqrt(0.04) - math.sqrt(1e-4)) * (t - 1) / (T - 1)
    torch.testing.assert_close(roots, expected)


def cosine_f(step: torch.Tensor, s: float) -> torch.Tensor:
    """Improved DDPM eq. (17): f(t) = cos^2(((t/T + s) / (1 + s)) pi/2)."""
    return torch.cos((step / T + s) / (1 + s) * math.pi / 2) ** 2


def test_cosine_follows_nichol_and_dhariwal_until_the_clip():
    s = 0.008
    alpha_bar = schedule("cosine").alpha_bar(T)
    closed = cosine_f(t, s) / cosine_f(torch.zeros(1, dtype=torch.float64), s)
    torch.testing.assert_close(alpha_bar[:-1], closed[:-1], rtol=1e-12, atol=0)
    assert closed[-1] < 1e-30  # f(T) = cos^2(pi/2): unclipped, beta_T would be 1


def test_cosine_clips_beta_at_max_beta():
    betas = schedule("cosine:max_beta=0.9").betas(T)
    assert betas.max() == pytest.approx(0.9)
    assert betas[-1] == pytest.approx(0.9)
    unclipped = 1 - cosine_f(t, 0.008) / cosine_f(t - 1, 0.008)
    torch.testing.assert_close(betas, unclipped.clamp(max=0.9))


def test_sigmoid_follows_its_closed_form_on_alpha_bar():
    start, end, tau = -2.0, 4.0, 0.7
    alpha_bar = schedule(f"sigmoid:start={start},end={end},tau={tau}").alpha_bar(T)

    def v(x: torch.Tensor | float) -> torch.Tensor:
        return torch.sigmoid(torch.as_tensor(x, dtype=torch.float64) / tau)

    closed = (v(end) - v(start + t / T * (end - start))) / (v(end) - v(start))
    torch.testing.assert_close(alpha_bar[:-1], closed[:-1], rtol=1e-10, atol=0)
    assert schedule("sigmoid").betas(T)[-1] == pytest.approx(0.999)


def test_quadratic_grows_with_the_square_of_t():
    betas = schedule("quadratic:beta_min=0.001,beta_max=0.05").betas(T)
    torch.testing.assert_close(betas, 0.001 + (0.05 - 0.001) * ((t - 1) / (T - 1)) ** 2)


def test_geometric_has_a_constant_ratio_between_its_ends():
    betas = schedule("geometric:beta_min=0.001,beta_max=0.1").betas(T)
    ratios = betas[1:] / betas[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 100 ** (1 / (T - 1))))
    assert (betas[0].item(), betas[-1].item()) == pytest.approx((0.001, 0.1))


def test_constant_beta_gives_a_geometric_alpha_bar():
    alpha_bar = schedule("constant:beta=0.05").alpha_bar(T)
    torch.testing.assert_close(alpha_bar, 0.95 ** t)


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "cosine", "sigmoid", "quadratic",
                                  "geometric", "constant"])
def test_zero_terminal_snr_rescale_ends_at_zero_and_keeps_the_first_step(name):
    raw = schedule(name)
    rescaled = schedule(f"{name}:zero_terminal_snr=true")
    root, raw_root = rescaled.alpha_bar(T).sqrt(), raw.alpha_bar(T).sqrt()
    assert root[-1] == 0
    assert root[0].item() == pytest.approx(raw_root[0].item(), rel=1e-12)
    assert rescaled.betas(T)[-1] == 1
    assert rescaled.check(T) == []


def test_zero_terminal_snr_is_affine_in_sqrt_alpha_bar():
    """Lin et al. (2024), Algorithm 1: sqrt(alpha_bar) is shifted and scaled, so the SNR curve
    keeps its shape: equal steps of the raw sqrt(alpha_bar) stay equal after the rescale."""
    raw = schedule("constant:beta=0.05").alpha_bar(T).sqrt()
    rescaled = schedule("constant:beta=0.05,zero_terminal_snr=true").alpha_bar(T).sqrt()
    slope = (rescaled[0] - rescaled[-1]) / (raw[0] - raw[-1])
    torch.testing.assert_close(rescaled[1:] - rescaled[:-1], slope * (raw[1:] - raw[:-1]))


def test_log_snr_matches_its_definition_and_is_minus_infinity_at_zero():
    alpha_bar = torch.tensor([0.9, 0.5, 1e-3, 0.0], dtype=torch.float64)
    snr = log_snr(alpha_bar)
    torch.testing.assert_close(snr[:3], torch.log(alpha_bar[:3] / (1 - alpha_bar[:3])))
    assert snr[-1] == -math.inf


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("linear:beta_min=0.03,beta_max=0.02", "must not exceed beta_max"),
        ("scaled_linear:beta_min=0.03,beta_max=0.02", "must not exceed beta_max"),
        ("quadratic:beta_min=0.03,beta_max=0.02", "must not exceed beta_max"),
        ("geometric:beta_min=0.03,beta_max=0.02", "must not exceed beta_max"),
        ("sigmoid:start=3,end=-3", "must be below end"),
        ("sigmoid:tau=0", "out of range"),
        ("cosine:max_beta=1", "out of range"),
        ("cosine:s=-0.1", "out of range"),
        ("constant:beta=1.5", "out of range"),
        ("constant:zero_terminal_snr=1", "not a valid bool"),
    ],
)
def test_invalid_parameters_are_config_errors(spec, fragment):
    with pytest.raises(ConfigError, match=fragment) as caught:
        schedule(spec)
    assert caught.value.exit_code == 2


def test_build_component_validates_a_schedule_like_a_run_file():
    cls = default_host().registry.get("schedule", "cosine")
    with pytest.raises(ConfigError, match="no parameter 'offset'"):
        build_component(cls, {"offset": 0.01}, source="run.toml", key="run.schedule")


def test_underflowing_alpha_bar_is_rejected_by_check():
    with pytest.raises(ValueError, match="decrease strictly"):
        schedule("linear:beta_min=0.5,beta_max=0.99").check(5000)


def test_zero_terminal_snr_needs_two_steps():
    with pytest.raises(ValueError, match="T >= 2"):
        schedule("constant:zero_terminal_snr=true").check(1)


def test_terminal_alpha_bar_far_from_zero_warns_unless_rescaled():
    warnings = schedule("geometric").check(1000)
    assert len(warnings) == 1 and "far from 0" in warnings[0]
    assert schedule("geometric:zero_terminal_snr=true").check(1000) == []
    assert schedule("cosine").check(1000) == []


def test_a_schedule_overriding_the_rescaled_methods_is_refused():
    with pytest.raises(TypeError, match="defines raw_alpha_bar or raw_betas instead"):
        @dataclass(frozen=True)
        class Bypass(NoiseSchedule):
            """Would bypass zero_terminal_snr."""

            name = "bypass"

            def betas(self, T: int) -> torch.Tensor:
                return torch.full((T,), 0.01, dtype=torch.float64)


def test_a_schedule_defining_no_raw_method_says_so():
    @dataclass(frozen=True)
    class Empty(NoiseSchedule):
        """Defines nothing."""

        name = "empty"

    with pytest.raises(NotImplementedError, match="neither raw_betas nor raw_alpha_bar"):
        Empty().alpha_bar(T)


def test_a_schedule_may_define_only_alpha_bar():
    @dataclass(frozen=True)
    class HalfLife(NoiseSchedule):
        """alpha_bar halves every 5 steps."""

        name = "half-life"

        def raw_alpha_bar(self, T: int) -> torch.Tensor:
            return 0.5 ** (torch.arange(1, T + 1, dtype=torch.float64) / 5)

    betas = HalfLife().betas(T)
    torch.testing.assert_close(betas, torch.full_like(betas, 1 - 0.5 ** 0.2))


def test_plot_writes_a_png(tmp_path: Path):
    output = tmp_path / "plots" / "schedules.png"
    result = runner.invoke(app, ["schedules", "plot", "linear", "cosine:s=0.02",
                                 "constant:beta=0.01,zero_terminal_snr=true", "--T", "40",
                                 "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_prints_the_terminal_warning(tmp_path: Path):
    result = runner.invoke(app, ["schedules", "plot", "geometric", "-o",
                                 str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    assert "warning: geometric: alpha_bar_T" in result.output


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cosin", "cosin: unknown schedule 'cosin' (did you mean 'cosine'?"),
        ("linear:beta_mx=0.05", "linear.beta_mx: schedule 'linear' has no parameter 'beta_mx'"),
        ("linear:beta_max=lots", "linear.beta_max: 'lots' is not a valid float"),
        ("linear:beta_max", "linear: expected key=value, got 'beta_max'"),
        ("linear:beta_max=0.05,beta_max=0.04", "parameter 'beta_max' is given twice"),
        ("linear:beta_min=0.5,beta_max=0.99", "alpha_bar_t must decrease strictly"),
    ],
)
def test_plot_bad_input_exits_2_with_a_clear_message(tmp_path: Path, spec, message):
    output = tmp_path / "never.png"
    result = runner.invoke(app, ["schedules", "plot", spec, "--T", "5000", "-o", str(output)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not output.exists()
