"""The training recipe: optimisers, learning-rate schedules, gradient clipping, precision and
compilation as [run] settings; the defaults train as before, and every part resumes exactly."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch
from ablate_builtins.lr_schedules import Constant, Cosine, InverseSqrt
from ablate_builtins.optimizers import Sgd
from torch import nn
from typer.testing import CliRunner

import ablate
from ablate import metrics_log
from ablate.checkpoint import load_checkpoint, save_checkpoint
from ablate.cli import app
from ablate.config import parse_run
from ablate.errors import ConfigError
from ablate.lr_schedules import LrSchedule
from ablate.optimizers import Optimizer
from ablate.plugin_host import load_host
from ablate.recipe import TrainingRecipe
from ablate.study_config import load_study_file
from ablate.testing import ContractError, check_component
from ablate.training import Interrupted, Trainer
from tests.conftest import TINY_STUDY_RUN, tiny_config
from tests.test_training import InterruptAt


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in metrics_log.read(run_dir / "metrics.jsonl")]


def test_the_default_recipe_is_the_coursework_adam_at_a_constant_lr():
    config = tiny_config()
    assert (config.optimizer.name, config.lr_schedule.name) == ("adam", "constant")
    assert (config.grad_clip, config.precision, config.compile, config.channels_last) == (
        0.0, "fp32", False, False)
    recipe = TrainingRecipe(config, nn.Linear(2, 2), torch.device("cpu"), 10)
    assert type(recipe.optimizer) is torch.optim.Adam
    assert recipe.optimizer.defaults["betas"] == (0.9, 0.999) and recipe.lr == config.lr


@pytest.mark.parametrize(("schedule", "total", "expected"), [
    (Constant(warmup_steps=4), 100, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]),
    (Cosine(), 4, [1.0, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5, 0.5 - 0.5 * math.cos(math.pi / 4)]),
    (Cosine(warmup_steps=2, min_ratio=0.2), 4, [0.5, 1.0, 1.0, 0.6]),
    (InverseSqrt(decay_start=2), 100, [1.0, 1.0, 1 / math.sqrt(1.5), 1 / math.sqrt(2)]),
])
def test_lr_schedules_follow_their_closed_forms(schedule, total, expected):
    assert [schedule.factor(s, total) for s in range(len(expected))] == pytest.approx(expected)


def test_the_optimiser_steps_with_the_scheduled_lr():
    config = tiny_config(lr=0.1, lr_schedule={"name": "cosine", "warmup_steps": 2})
    model = nn.Linear(3, 1)
    recipe = TrainingRecipe(config, model, torch.device("cpu"), 6)
    seen = []
    for _ in range(6):
        seen.append(recipe.lr)
        recipe.step(lambda net, x, rng: net(x).square().mean(), torch.ones(4, 3), None)
    assert seen == pytest.approx([0.1 * config.lr_schedule.factor(s, 6) for s in range(6)])


def test_gradient_clipping_bounds_the_step_of_plain_sgd():
    config = tiny_config(lr=1.0, grad_clip=0.5, optimizer={"name": "sgd", "momentum": 0.0})
    model = nn.Linear(3, 1)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    recipe = TrainingRecipe(config, model, torch.device("cpu"), 1)
    recipe.step(lambda net, x, rng: 100 * net(x).sum(), torch.ones(4, 3), None)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert float((after - before).norm()) == pytest.approx(0.5, rel=1e-5)


def test_sgd_refuses_nesterov_without_momentum():
    with pytest.raises(ConfigError, match="nesterov = true needs momentum > 0"):
        tiny_config(optimizer={"name": "sgd", "momentum": 0.0, "nesterov": True})
    assert Sgd(nesterov=True).build([nn.Parameter(torch.ones(1))], 0.1).defaults["nesterov"]


def test_an_interrupted_adamw_cosine_clipped_run_resumes_to_the_same_result(tmp_path: Path):
    config = tiny_config(optimizer={"name": "adamw", "beta2": 0.99, "weight_decay": 0.1},
                         lr_schedule={"name": "cosine", "warmup_steps": 3}, grad_clip=0.5,
                         lr=1e-3)
    reference = Trainer(config, tmp_path / "straight").run()
    with pytest.raises(Interrupted):
        Trainer(config, tmp_path / "stopped", reporter=InterruptAt(6)).run()
    resumed = Trainer(config, tmp_path / "stopped").run(resume=True)
    assert losses(tmp_path / "stopped") == losses(tmp_path / "straight")
    straight, meta = load_checkpoint(reference.checkpoint)
    again, _ = load_checkpoint(resumed.checkpoint)
    assert torch.equal(straight["model.out.weight"], again["model.out.weight"])
    assert meta["lr_schedule"]["last_epoch"] == 12


def test_a_checkpoint_from_before_the_recipe_families_still_resumes(tmp_path: Path):
    config = tiny_config(steps=16, checkpoint_every=2)
    Trainer(config, tmp_path / "straight").run()
    with pytest.raises(RuntimeError, match="stop"):
        Trainer(config, tmp_path / "old", epoch_callback=_stop_at_epoch(2)).run()
    path = tmp_path / "old" / "checkpoints" / "last.safetensors"
    tensors, meta = load_checkpoint(path)
    for key in ("optimizer", "lr_schedule", "grad_clip", "precision", "compile",
                "channels_last"):
        meta["config"].pop(key)  # as ablate wrote them before these [run] keys existed
    del meta["lr_schedule"]
    save_checkpoint(path, tensors, meta)
    Trainer(config, tmp_path / "old").run(resume=True)
    assert losses(tmp_path / "old") == losses(tmp_path / "straight")


def _stop_at_epoch(epoch: int):
    def callback(record):
        if record["epoch"] == epoch:
            raise RuntimeError("stop")
    return callback


def test_bf16_autocast_on_the_cpu_trains_close_to_fp32(tmp_path: Path):
    fp32 = Trainer(tiny_config(steps=8), tmp_path / "fp32").run()
    bf16 = Trainer(tiny_config(steps=8, precision="bf16"), tmp_path / "bf16").run()
    for ours, reference in zip(losses(tmp_path / "bf16"), losses(tmp_path / "fp32"), strict=True):
        assert math.isfinite(ours) and ours == pytest.approx(reference, rel=0.05)
    assert bf16.metrics[-1]["step"] == fp32.metrics[-1]["step"] == 8


def test_channels_last_trains_like_the_default_layout(tmp_path: Path):
    Trainer(tiny_config(), tmp_path / "default").run()
    Trainer(tiny_config(channels_last=True), tmp_path / "nhwc").run()
    assert losses(tmp_path / "nhwc") == pytest.approx(losses(tmp_path / "default"), rel=1e-4)


def test_fp16_is_refused_off_cuda_before_training(tmp_path: Path):
    with pytest.raises(ConfigError, match="precision fp16 needs CUDA.*use bf16"):
        tiny_config(precision="fp16")
    config = tiny_config(precision="fp16", device="auto")
    if torch.cuda.is_available():
        pytest.skip("auto resolves to CUDA here, where fp16 is allowed")
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        Trainer(config, tmp_path / "run").run()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_study_dry_run_refuses_fp16_where_auto_finds_no_cuda(tmp_path: Path):
    if torch.cuda.is_available():
        pytest.skip("auto resolves to CUDA here, where fp16 is allowed")
    run = TINY_STUDY_RUN.replace('device = "cpu"', 'device = "auto"\nprecision = "fp16"')
    study = tmp_path / "study.toml"
    study.write_text(f'[study]\nname = "fp16"\ntrials = 1\noutput = "{tmp_path / "out"}"\n'
                     f'{run}\n[search]\n"run.lr" = [2e-4, 1e-3]\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(study), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "run.precision: precision fp16 needs CUDA, but the run trains on cpu" in result.output


def test_compile_wraps_the_training_network_and_keeps_checkpoint_keys():
    model = tiny_config().decoder.build(1, 28)
    recipe = TrainingRecipe(tiny_config(compile=True), model, torch.device("cpu"), 4)
    assert recipe.network is not model and recipe.network._orig_mod is model
    assert set(recipe.network.state_dict()) != set(model.state_dict())  # why we save `model`


@pytest.mark.skipif(not os.environ.get("ABLATE_COMPILE_TESTS"),
                    reason="compiling takes ~30 s on 2 cores: set ABLATE_COMPILE_TESTS=1")
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="torch.compile on a CPU needs a C compiler")
def test_a_compiled_run_trains_like_an_eager_one(tmp_path: Path):
    Trainer(tiny_config(steps=4), tmp_path / "eager").run()
    Trainer(tiny_config(steps=4, compile=True), tmp_path / "compiled").run()
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-3)


def test_studies_search_the_optimiser_and_its_conditional_parameters(tmp_path: Path):
    path = tmp_path / "study.toml"
    path.write_text(
        f'[study]\noutput = "{(tmp_path / "out").as_posix()}"\ntrials = 2\nbaselines = []\n'
        f"{TINY_STUDY_RUN}\n[search]\n"
        '"run.optimizer.name" = ["adam", "sgd"]\n'
        '"run.optimizer.sgd.momentum" = {low = 0.5, high = 0.95}\n'
        '"run.lr_schedule.name" = ["constant", "cosine"]\n'
        '"run.lr_schedule.warmup_steps" = [0, 4]\n', encoding="utf-8")
    space = load_study_file(path).space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(16):
        point = space.sample(study.ask())
        table = space.run_table(point)
        seen.add(point["optimizer.name"])
        assert ("optimizer.sgd.momentum" in point) == (point["optimizer.name"] == "sgd")
        assert table["lr_schedule"]["name"] == point["lr_schedule.name"]
        config = parse_run(table, source="trial")
        assert config.lr_schedule.warmup_steps == point["lr_schedule.warmup_steps"]
    assert seen == {"adam", "sgd"}


def test_list_plugins_shows_optimisers_and_lr_schedules_with_their_parameters():
    result = CliRunner().invoke(app, ["list-plugins", "--family", "lr_schedule", "--json"])
    assert result.exit_code == 0, result.output
    listed = {c["name"]: c for c in json.loads(result.output)["families"]["lr_schedule"]}
    assert {"constant", "cosine", "inverse_sqrt"} <= set(listed)
    assert "warmup_steps" in json.dumps(listed["cosine"])


@dataclass(frozen=True)
class IgnoresLr(Optimizer):
    """Always steps at lr 1, whatever the run says."""

    name = "ignores-lr"

    def build(self, parameters, lr):
        return torch.optim.SGD(parameters, lr=1.0)


@dataclass(frozen=True)
class StopsDead(LrSchedule):
    """Sets the lr to 0 after ten steps."""

    name = "stops-dead"

    def decay(self, step, total_steps):
        return 1.0 if step < 10 else 0.0


@pytest.mark.parametrize(("family", "component", "rule"), [
    ("optimizer", IgnoresLr, "must use that lr"),
    ("lr_schedule", StopsDead, r"factor\(10, 1000\) must be a positive finite number"),
])
def test_the_contracts_catch_a_broken_optimiser_and_schedule(family, component, rule):
    class Plugin:
        @ablate.hookimpl
        def register_optimizers(self, register):
            register(IgnoresLr)

        @ablate.hookimpl
        def register_lr_schedules(self, register):
            register(StopsDead)

    host = load_host([("broken", Plugin())], use_entry_points=False)
    with pytest.raises(ContractError, match=rule):
        check_component(family, component.name, host=host)
