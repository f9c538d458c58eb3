"""EMA strategies: decay schedules, the power-function EMA and post-hoc reconstruction (EDM2)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ablate_builtins.ema import Ema, NoEma, WarmupEma
from ablate_builtins.posthoc_ema import PowerEma
from torch import nn
from typer.testing import CliRunner

from ablate.checkpoint import load_checkpoint, prefixed, save_checkpoint, unprefixed
from ablate.cli import app
from ablate.ema import Averager, EmaStrategy
from ablate.errors import ConfigError
from ablate.plugin_host import default_host
from ablate.posthoc import (
    PosthocState,
    coefficients,
    gamma_of,
    power_beta,
    profile_inner,
    sigma_rel_of,
)
from ablate.sampling import draw, load_trained
from ablate.training import Trainer
from tests.conftest import tiny_config

runner = CliRunner()


def flat(weights) -> torch.Tensor:
    values = weights.values() if isinstance(weights, dict) else weights
    return torch.cat([v.detach().flatten() for v in values])


def integrate(f: np.ndarray, x: np.ndarray) -> float:
    """Trapezoidal rule (np.trapezoid needs numpy 2; the project supports 1.26)."""
    return float(((f[1:] + f[:-1]) / 2 * np.diff(x)).sum())


def scalar_model(value: float = 0.0) -> nn.Module:
    """One float64 parameter, so averages can be compared with their formulas exactly."""
    model = nn.Module()
    model.theta = nn.Parameter(torch.tensor([value], dtype=torch.float64))
    return model


def run_sequence(strategy: EmaStrategy, values: list[float]) -> list[float]:
    """Feed theta(1), theta(2), ... through an averager; the sampled average after each step."""
    model = scalar_model(values[0])
    averager = strategy.build(model)
    out = []
    for step, value in enumerate(values, start=1):
        with torch.no_grad():
            model.theta.fill_(value)
        averager.update(model, step)
        out.append(averager.sampling_model().theta.item())
    return out


STRATEGIES = {
    "none": NoEma(),
    "ema": Ema(decay=0.9, warmup_steps=3),
    "warmup": WarmupEma(inv_gamma=2.0, power=0.75, min_decay=0.2),
    "power": PowerEma(),
    "power with snapshots, untracked width": PowerEma(sigma_rel=0.07, snapshot_every=3,
                                                      max_snapshots=4),
}


def test_every_registered_strategy_is_covered():
    assert set(default_host().registry.names("ema")) <= set(STRATEGIES)


@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES)
def test_ema_of_a_constant_parameter_is_that_constant(strategy: EmaStrategy):
    model = nn.Linear(5, 3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    constant = flat(model.parameters()).clone()
    averager: Averager = strategy.build(model)
    for step in range(1, 31):
        averager.update(model, step)
    # float32 combination of stored averages with coefficients summing to 1
    torch.testing.assert_close(flat(averager.sampling_model().parameters()), constant,
                               rtol=1e-6, atol=1e-6)


def test_ema_decay_is_a_copy_during_warmup_then_constant():
    values = torch.randn(12, generator=torch.Generator().manual_seed(0)).tolist()
    averages = run_sequence(Ema(decay=0.9, warmup_steps=3), values)
    expected = values[0]
    for step, (value, got) in enumerate(zip(values, averages, strict=True), start=1):
        expected = value if step <= 3 else 0.9 * expected + 0.1 * value
        assert got == pytest.approx(expected, rel=1e-12), step


def test_warmup_decay_follows_its_formula_step_by_step():
    strategy = WarmupEma(inv_gamma=2.0, power=0.75, min_decay=0.1, max_decay=0.9)
    for step in range(2, 400):
        formula = 1 - (1 + (step - 1) / 2.0) ** -0.75
        assert strategy.decay_at(step) == pytest.approx(min(max(formula, 0.1), 0.9), abs=1e-15)
    assert strategy.decay_at(1) == 0.0 and strategy.decay_at(399) == 0.9  # the first copies


def test_warmup_average_applies_that_decay_each_step():
    strategy = WarmupEma(inv_gamma=1.0, power=2 / 3)
    values = torch.randn(50, generator=torch.Generator().manual_seed(0)).tolist()
    expected = values[0]
    for step, (value, got) in enumerate(zip(values, run_sequence(strategy, values),
                                            strict=True), start=1):
        decay = 1 - (1 + (step - 1)) ** (-2 / 3)
        expected = decay * expected + (1 - decay) * value
        assert got == pytest.approx(expected, rel=1e-12), step


def test_power_ema_uses_beta_one_minus_one_over_t_to_the_gamma_plus_one_each_step():
    values = torch.randn(60, generator=torch.Generator().manual_seed(0)).tolist()
    gamma = gamma_of(0.10)
    averages = run_sequence(PowerEma(sigma_rels=(0.10,), sigma_rel=0.10), values)
    expected = 0.0
    for t, (value, got) in enumerate(zip(values, averages, strict=True), start=1):
        beta = (1 - 1 / t) ** (gamma + 1)
        assert power_beta(t, gamma) == pytest.approx(beta, abs=1e-15)
        expected = beta * expected + (1 - beta) * value
        assert got == pytest.approx(expected, rel=1e-12), t


def test_power_ema_weights_each_step_by_the_profile_mass_of_its_interval():
    """theta_hat(t) = sum_tau theta(tau) int_{tau-1}^{tau} p_{t,gamma}: what reconstruction uses."""
    values = torch.randn(80, generator=torch.Generator().manual_seed(3)).double()
    gamma = gamma_of(0.05)
    t = len(values)
    tau = torch.arange(1, t + 1, dtype=torch.float64)
    mass = (tau ** (gamma + 1) - (tau - 1) ** (gamma + 1)) / t ** (gamma + 1)
    average = run_sequence(PowerEma(sigma_rels=(0.05,)), values.tolist())[-1]
    assert mass.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert average == pytest.approx((mass * values).sum().item(), rel=1e-10)


def test_sigma_rel_is_the_relative_std_of_the_profile_and_gamma_inverts_it():
    assert gamma_of(0.05) == pytest.approx(16.97, abs=0.01)  # the values EDM2 quotes
    assert gamma_of(0.10) == pytest.approx(6.94, abs=0.01)
    for gamma in (0.5, 3.0, 6.94, 16.97, 80.0):
        tau = np.linspace(0, 1, 200_001)
        p = (gamma + 1) * tau ** gamma
        mean = integrate(tau * p, tau)
        std = math.sqrt(integrate((tau - mean) ** 2 * p, tau))
        assert sigma_rel_of(gamma) == pytest.approx(std, rel=1e-6)
        assert gamma_of(sigma_rel_of(gamma)) == pytest.approx(gamma, rel=1e-9)


def test_sigma_rel_outside_the_power_family_is_refused():
    with pytest.raises(ValueError, match="sigma_rel must lie in"):
        gamma_of(0.3)


def test_profile_inner_product_matches_numerical_integration():
    tau = np.linspace(0, 500, 1_000_001)
    for t_a, g_a, t_b, g_b in ((300, 6.94, 500, 16.97), (500, 16.97, 120, 6.94), (50, 2, 50, 2)):
        p_a = np.where(tau <= t_a, (g_a + 1) * tau ** g_a / t_a ** (g_a + 1), 0)
        p_b = np.where(tau <= t_b, (g_b + 1) * tau ** g_b / t_b ** (g_b + 1), 0)
        assert profile_inner(t_a, g_a, t_b, g_b) == pytest.approx(
            integrate(p_a * p_b, tau), rel=1e-4)


def test_reconstruction_coefficients_sum_to_one():
    steps = [s for s in range(10, 301, 10) for _ in range(2)]
    gammas = [g for _ in range(30) for g in (gamma_of(0.05), gamma_of(0.10))]
    for sigma_rel in (0.03, 0.07, 0.15, 0.25):
        x = coefficients(steps, gammas, 300, gamma_of(sigma_rel))
        assert x.sum() == pytest.approx(1.0, abs=1e-9)


@pytest.fixture(scope="module")
def toy_run():
    """A linear layer trained 300 noisy SGD steps; a two-width power EMA with snapshots every
    10 steps beside a directly tracked sigma_rel = 0.07 average."""
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(8, 4)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    target = torch.randn(4, 8, generator=g)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    pair = PowerEma(sigma_rels=(0.05, 0.10), sigma_rel=0.07, snapshot_every=10,
                    max_snapshots=64).build(model)
    direct = PowerEma(sigma_rels=(0.07,), sigma_rel=0.07).build(model)
    for step in range(1, 301):
        x = torch.randn(8, 8, generator=g)
        loss = ((model(x) - x @ target.T) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pair.update(model, step)
        direct.update(model, step)
    return pair, direct


def test_reconstructing_a_tracked_width_returns_that_average(toy_run):
    pair, _ = toy_run
    state: PosthocState = pair.state
    for sigma_rel, track in zip(state.sigma_rels, state.tracks, strict=True):
        weights, error = state.reconstruct(sigma_rel)
        assert error < 1e-6
        torch.testing.assert_close(flat(weights), flat(track), rtol=0, atol=1e-6)


def test_reconstruction_matches_an_independently_tracked_average(toy_run):
    pair, direct = toy_run
    short, long = (flat(t) for t in pair.state.tracks)
    reconstructed = flat(pair.sampling_model().parameters())
    tracked = flat(direct.sampling_model().parameters())
    # measured 0.06-0.07% of the gap between the two tracked widths (30 snapshots, 3 seeds)
    assert (reconstructed - tracked).norm() < 0.01 * (short - long).norm()


def test_reconstruction_between_the_tracked_widths_lies_between_them(toy_run):
    pair, _ = toy_run
    short, long = (flat(t) for t in pair.state.tracks)
    gap = long - short
    for sigma_rel in (0.06, 0.07, 0.09):
        weights, _ = pair.state.reconstruct(sigma_rel)
        offset = flat(weights) - short
        along = (offset @ gap / (gap @ gap)).item()
        assert 0 < along < 1, sigma_rel
        assert (offset - along * gap).norm() < 0.1 * gap.norm()  # measured about 0.02


def test_snapshot_store_stays_bounded_by_thinning_to_a_doubled_interval():
    model = nn.Linear(2, 2)
    averager = PowerEma(snapshot_every=2, max_snapshots=4).build(model)
    tracked_at = {}
    for step in range(1, 41):
        with torch.no_grad():
            model.weight.add_(0.1)
        averager.update(model, step)
        tracked_at[step] = [flat(t).clone() for t in averager.state.tracks]
        assert len(averager.state.snapshot_steps) <= 4
    assert averager.state.snapshot_steps == [16, 32]
    assert averager.state.snapshot_every == 16
    for step, profiles in zip(averager.state.snapshot_steps, averager.state.snapshots,
                              strict=True):
        for snap, expected in zip(profiles, tracked_at[step], strict=True):
            assert torch.equal(flat(snap), expected)


def train_power(model: nn.Module, averager: Averager, steps: range) -> None:
    for step in steps:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.sin(torch.arange(p.numel(), dtype=p.dtype) * step).view_as(p))
        averager.update(model, step)


def test_state_dict_round_trips_through_a_checkpoint_file(tmp_path: Path):
    strategy = PowerEma(snapshot_every=4, max_snapshots=3)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    averager = strategy.build(model)
    train_power(model, averager, range(1, 26))
    path = tmp_path / "ema.safetensors"
    save_checkpoint(path, prefixed("ema", averager.state_dict()), {})
    restored = strategy.build(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)))
    restored.load_state_dict(unprefixed("ema", load_checkpoint(path)[0]))
    before, after = averager.state_dict(), restored.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    twin = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    twin.load_state_dict(model.state_dict())
    train_power(model, averager, range(26, 40))
    train_power(twin, restored, range(26, 40))
    assert torch.equal(flat(averager.state_dict()), flat(restored.state_dict()))


def test_state_of_other_tracked_widths_is_refused():
    model = nn.Linear(2, 2)
    averager = PowerEma().build(model)
    averager.update(model, 1)
    with pytest.raises(RuntimeError, match="sigma_rels"):
        PowerEma(sigma_rels=(0.05, 0.2)).build(model).load_state_dict(averager.state_dict())


def power_config(**overrides):
    return tiny_config(steps=16, checkpoint_every=2,
                       ema={"name": "power", "snapshot_every": 3, "max_snapshots": 3,
                            "sigma_rel": 0.07}, **overrides)


def test_trainer_resume_with_power_ema_gives_identical_results(tmp_path: Path):
    config = power_config()
    straight = Trainer(config, tmp_path / "straight").run()

    def crash_in_epoch_three(record):
        if record["epoch"] == 3:  # its checkpoint is not due: resume replays from step 8
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        Trainer(config, tmp_path / "crashed", epoch_callback=crash_in_epoch_three).run()
    resumed = Trainer(config, tmp_path / "crashed").run(resume=True)
    expected, _ = load_checkpoint(straight.checkpoint)
    got, _ = load_checkpoint(resumed.checkpoint)
    assert expected.keys() == got.keys()
    assert got["ema.posthoc.snapshot_steps"].tolist() == [6, 12]
    for key in expected:
        if not key.startswith("rng."):
            assert torch.equal(expected[key], got[key]), key


def test_ema_reconstruct_rewrites_only_the_sampling_weights(tmp_path: Path):
    run = Trainer(power_config(), tmp_path / "run").run()
    out = tmp_path / "r.safetensors"
    result = runner.invoke(app, ["ema-reconstruct", str(run.checkpoint), "--sigma-rel", "0.09",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "at step 16" in " ".join(result.output.split())  # rich wraps long lines
    before, meta_before = load_checkpoint(run.checkpoint)
    after, meta_after = load_checkpoint(out)
    expected, _ = PosthocState.from_state(unprefixed("ema", before)).reconstruct(0.09)
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"ema.sample.{name}" for name in expected}
    for name, value in expected.items():
        assert torch.equal(after[f"ema.sample.{name}"], value)
    assert meta_after.pop("posthoc_ema")["sigma_rel"] == 0.09
    assert meta_after == meta_before
    parts = load_trained(out)
    for name, value in parts.averager.sampling_model().state_dict().items():
        assert torch.equal(value, after[f"ema.sample.{name}"]), name
    assert torch.isfinite(draw(parts, 2, seed=0)).all()


def test_ema_reconstruct_refuses_a_run_without_snapshots(tmp_path: Path):
    run = Trainer(tiny_config(steps=4), tmp_path / "run").run()
    result = runner.invoke(app, ["ema-reconstruct", str(run.checkpoint), "--sigma-rel", "0.1",
                                 "-o", str(tmp_path / "r.safetensors")])
    assert result.exit_code == 2
    assert "no post-hoc EMA snapshots" in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("damage", "message"), [
    ("drop a snapshot", "missing 'snap.1.0.*'"),
    ("widen a profile", "sigma_rel must lie in"),
])
def test_ema_reconstruct_reports_damaged_snapshot_state(tmp_path: Path, damage, message):
    model = nn.Linear(2, 2)
    averager = PowerEma(snapshot_every=2).build(model)
    train_power(model, averager, range(1, 6))
    tensors = prefixed("ema", averager.state_dict())
    if damage == "drop a snapshot":
        tensors = {k: v for k, v in tensors.items() if not k.startswith("ema.snap.1.0.")}
    else:
        tensors["ema.posthoc.sigma_rels"] = torch.tensor([0.05, 0.5], dtype=torch.float64)
    save_checkpoint(tmp_path / "c.safetensors", tensors, {})
    result = runner.invoke(app, ["ema-reconstruct", str(tmp_path / "c.safetensors"),
                                 "--sigma-rel", "0.07", "-o", str(tmp_path / "r.safetensors")])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "damaged post-hoc EMA state" in output and message in output
    assert not (tmp_path / "r.safetensors").exists()


def test_ema_reconstruct_refuses_a_width_outside_the_power_family(tmp_path: Path):
    result = runner.invoke(app, ["ema-reconstruct", str(tmp_path / "missing.safetensors"),
                                 "--sigma-rel", "0.4", "-o", str(tmp_path / "r.safetensors")])
    assert result.exit_code == 2
    assert "--sigma-rel: 0.4 is out of range" in " ".join(result.output.split())


@pytest.mark.parametrize(("ema", "message"), [
    ({"name": "power", "sigma_rels": [0.05, 0.5]}, "sigma_rels must lie in"),
    ({"name": "power", "sigma_rels": [0.05, 0.05]}, "must be distinct"),
    ({"name": "power", "sigma_rels": []}, "at least one"),
    ({"name": "warmup", "min_decay": 0.9, "max_decay": 0.5}, "must not exceed"),
])
def test_inconsistent_strategy_parameters_are_a_config_error(ema, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(ema=ema)
