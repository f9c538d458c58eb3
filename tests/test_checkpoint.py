"""Checkpoints: safetensors only, atomic, and every kind of damage is a clear error."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from ablate.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from ablate.cli import app
from ablate.errors import CheckpointError
from ablate.run_file import load_run_file
from ablate.sampling import load_trained
from ablate.training import CHECKPOINT_NAME, Trainer
from tests.conftest import tiny_config


def test_round_trip_keeps_tensors_and_metadata(tmp_path: Path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.arange(3.0)}, {"step": 7, "nested": {"x": [1, 2]}})
    tensors, meta = load_checkpoint(path)
    assert torch.equal(tensors["a"], torch.arange(3.0))
    assert meta == {"step": 7, "nested": {"x": [1, 2]}}
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary left


def test_truncated_checkpoint_is_rejected(tmp_path: Path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.zeros(100)}, {})
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_plain_safetensors_file_is_not_taken_for_a_checkpoint(tmp_path: Path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"a": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an ablate checkpoint"):
        load_checkpoint(path)


def test_checkpoint_of_another_model_shape_is_rejected(tmp_path: Path):
    result = Trainer(tiny_config(), tmp_path / "run").run()
    tensors, meta = load_checkpoint(result.checkpoint)
    meta["config"]["decoder"]["channels"] = [4, 16]
    save_checkpoint(tmp_path / "tampered.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_trained(tmp_path / "tampered.safetensors")


# ---------------------------------------------------------------------------------------------
# Crafted and damaged checkpoints through sample, evaluate and train --resume
# ---------------------------------------------------------------------------------------------

RUN_FILE = ('[run]\nT = 20\nsteps = 2\nbatch_size = 16\nsubset = 64\ngrid_size = 4\n'
            'device = "cpu"\ndecoder = {name = "cnn", channels = [4, 8], time_hidden = 16}\n')
SAMPLE, EVALUATE, RESUME = "sample", "evaluate", "resume"
EVERY = (SAMPLE, EVALUATE, RESUME)


def _tensors(change):
    def craft(tensors, meta):
        change(tensors)
        return tensors, meta
    return craft


def _meta(change):
    def craft(tensors, meta):
        change(meta)
        return tensors, meta
    return craft


def _set(key, value):
    return _meta(lambda meta: meta.__setitem__(key, value))


def _deep(levels):
    value: object = 0
    for _ in range(levels):
        value = [value]
    return value


def _first(prefix):
    return lambda tensors: next(k for k in sorted(tensors) if k.startswith(prefix))


def _replace_first(prefix, make):
    def change(tensors):
        key = _first(prefix)(tensors)
        tensors[key] = make(tensors[key])
    return _tensors(change)


FIRST_WEIGHT = "model."
CRAFTED_META = {  # name -> (craft(tensors, meta) -> (tensors, meta), commands that must refuse)
    "meta_list": (lambda t, m: (t, [1, 2]), EVERY),
    "meta_number": (lambda t, m: (t, 3), EVERY),
    "meta_string": (lambda t, m: (t, "x"), EVERY),
    "meta_nested_deep": (lambda t, m: (t, {"config": _deep(40)}), EVERY),
    "config_missing": (_meta(lambda m: m.pop("config")), EVERY),
    "config_list": (_set("config", [1]), EVERY),
    "config_invalid": (_meta(lambda m: m["config"].__setitem__("T", -1)), EVERY),
    "config_nan": (_meta(lambda m: m["config"].__setitem__("lr", float("nan"))), EVERY),
    "config_nested": (_meta(lambda m: m["config"].__setitem__("decoder", _deep(30))), EVERY),
    "image_shape_missing": (_meta(lambda m: m.pop("image_shape")), (SAMPLE, EVALUATE)),
    "image_shape_short": (_set("image_shape", [1, 28]), (SAMPLE, EVALUATE)),
    "image_shape_strings": (_set("image_shape", ["1", "28", "28"]), (SAMPLE, EVALUATE)),
    "image_shape_zero": (_set("image_shape", [0, 28, 28]), (SAMPLE, EVALUATE)),
    "image_shape_huge": (_set("image_shape", [1, 10**9, 10**9]), (SAMPLE, EVALUATE)),
    "image_shape_not_square": (_set("image_shape", [1, 28, 14]), (SAMPLE, EVALUATE)),
    "image_shape_dict": (_set("image_shape", {"c": 1}), (SAMPLE, EVALUATE)),
    "progress_missing": (_meta(lambda m: m.pop("progress")), (RESUME,)),
    "progress_list": (_set("progress", [0, 0, 0]), (RESUME,)),
    "progress_number": (_set("progress", 7), (RESUME,)),
    "progress_negative_step": (_meta(lambda m: m["progress"].__setitem__("step", -3)), (RESUME,)),
    "progress_string_epoch": (_meta(lambda m: m["progress"].__setitem__("epoch", "1")),
                              (RESUME,)),
    "progress_nan_loss": (_meta(lambda m: m["progress"].__setitem__("loss_sum", float("nan"))),
                          (RESUME,)),
    "progress_extra_field": (_meta(lambda m: m["progress"].__setitem__("extra", 1)), (RESUME,)),
    "progress_missing_field": (_meta(lambda m: m["progress"].pop("batch")), (RESUME,)),
    "optimizer_missing": (_meta(lambda m: m.pop("optimizer")), (RESUME,)),
    "optimizer_list": (_set("optimizer", [1]), (RESUME,)),
    "optimizer_groups_empty": (_meta(lambda m: m["optimizer"].__setitem__("param_groups", [])),
                               (RESUME,)),
    "optimizer_scalars_list": (_meta(lambda m: m["optimizer"].__setitem__("scalars", [1])),
                               (RESUME,)),
    "lr_schedule_list": (_set("lr_schedule", [1, 2]), (RESUME,)),
    "optimizer_lr_nan": (_meta(lambda m: m["optimizer"]["param_groups"][0].__setitem__(
        "lr", float("nan"))), (RESUME,)),
    "optimizer_betas_string": (_meta(lambda m: m["optimizer"]["param_groups"][0].__setitem__(
        "betas", "x")), (RESUME,)),
    "lr_schedule_base_lr_huge": (_meta(lambda m: m["lr_schedule"].__setitem__(
        "base_lrs", [1e30])), (RESUME,)),
    "lr_schedule_lambda_attributes": (_meta(lambda m: m["lr_schedule"].__setitem__(
        "lr_lambdas", [{"__defaults__": [1]}])), (RESUME,)),
    "lr_schedule_step_string": (_meta(lambda m: m["lr_schedule"].__setitem__(
        "last_epoch", "x")), (RESUME,)),
    "weight_missing": (_tensors(lambda t: t.pop(_first(FIRST_WEIGHT)(t))), EVERY),
    "weight_unexpected": (_tensors(lambda t: t.__setitem__("model.extra", torch.zeros(2))),
                          EVERY),
    "weight_wrong_shape": (_replace_first(FIRST_WEIGHT, lambda v: torch.zeros(3, 3)), EVERY),
    "weight_float64": (_replace_first(FIRST_WEIGHT, lambda v: v.double()), EVERY),
    "weight_int32": (_replace_first(FIRST_WEIGHT, lambda v: v.to(torch.int32)), EVERY),
    "weight_nan": (_replace_first(FIRST_WEIGHT, lambda v: torch.full_like(v, float("nan"))),
                   EVERY),
    "weight_inf": (_replace_first(FIRST_WEIGHT, lambda v: torch.full_like(v, float("inf"))),
                   EVERY),
    "rng_data_missing": (_tensors(lambda t: t.pop("rng.data")), (RESUME,)),
    "rng_data_float": (_replace_first("rng.data", lambda v: v.float()), (RESUME,)),
    "rng_noise_short": (_replace_first("rng.noise", lambda v: v[:10]), (RESUME,)),
    "rng_global_empty": (_replace_first("rng.global", lambda v: v[:0]), (RESUME,)),
    "optim_state_wrong_shape": (_replace_first("optim.", lambda v: torch.zeros(1)), (RESUME,)),
    "optim_step_not_a_scalar": (_tensors(lambda t: t.__setitem__(
        "optim.0.step", torch.zeros_like(t["optim.0.exp_avg"]))), (RESUME,)),
    "optim_state_bad_index": (_tensors(lambda t: t.__setitem__("optim.x.exp_avg",
                                                               torch.zeros(1))), (RESUME,)),
}


def _raw(header: object, body: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + body


CRAFTED_FILES = {  # name -> bytes of a file that is no checkpoint at all
    "empty": lambda good: b"",
    "truncated_header": lambda good: good[:20],
    "truncated_tensors": lambda good: good[:len(good) // 2],
    "header_size_huge": lambda good: (2**62).to_bytes(8, "little") + good[8:],
    "random_bytes": lambda good: bytes(range(256)) * 8,
    "header_list": lambda good: _raw([1, 2, 3]),
    "metadata_list": lambda good: _raw({"__metadata__": [1]}),
    "metadata_meta_number": lambda good: _raw({"__metadata__": {"format": FORMAT, "meta": 3}}),
    "metadata_meta_deep": lambda good: _raw(
        {"__metadata__": {"format": FORMAT, "meta": "[" * 100_000 + "]" * 100_000}}),
    "tensor_offsets_outside": lambda good: _raw(
        {"__metadata__": {"format": FORMAT, "meta": "{}"},
         "model.w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, b"\0" * 8),
    "tensor_dtype_unknown": lambda good: _raw(
        {"__metadata__": {"format": FORMAT, "meta": "{}"},
         "model.w": {"dtype": "Q99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny finished run: its run file and its good checkpoint."""
    folder = tmp_path_factory.mktemp("trained")
    run_file = folder / "tiny.toml"
    run_file.write_text(RUN_FILE, encoding="utf-8")
    Trainer(load_run_file(run_file).run, folder / "run").run()
    return folder


def _write(trained: Path, tmp_path: Path, name: str, data: bytes | None = None,
           craft=None) -> Path:
    """The crafted checkpoint in a copy of the run folder, where --resume looks for it."""
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    path = run / "checkpoints" / CHECKPOINT_NAME
    if craft is not None:
        tensors, meta = load_checkpoint(path)
        tensors, meta = craft(dict(tensors), copy.deepcopy(meta))
        contiguous = {k: v.contiguous() for k, v in tensors.items()}
        save_file(contiguous, path, metadata={"format": FORMAT,
                                              "meta": json.dumps(meta, allow_nan=True)})
    else:
        path.write_bytes(data)
    return path


def _refuses(command: str, path: Path, trained: Path) -> None:
    args = {SAMPLE: ["sample", str(path), "-n", "2", "-o", str(path.parent / "g.png")],
            EVALUATE: ["evaluate", str(path), "-n", "2", "--metrics", "classifier_score"],
            RESUME: ["train", str(trained / "tiny.toml"), "-o", str(path.parent.parent),
                     "--resume"]}[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (command, result.output[-2000:])
    assert result.output.count("error: ") == 1, (command, result.output[-2000:])
    error = result.output[result.output.index("error: "):]
    assert error.strip().count("\n") == 0, (command, error)  # one line, after any warnings
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", sorted(CRAFTED_META))
def test_a_crafted_checkpoint_is_one_clear_error_in_each_command_that_reads_it(
        name: str, trained: Path, tmp_path: Path):
    craft, commands = CRAFTED_META[name]
    path = _write(trained, tmp_path, name, craft=craft)
    for command in commands:
        _refuses(command, path, trained)


@pytest.mark.parametrize("name", sorted(CRAFTED_FILES))
def test_a_damaged_file_is_one_clear_error_in_every_command(name: str, trained: Path,
                                                            tmp_path: Path):
    good = (trained / "run" / "checkpoints" / CHECKPOINT_NAME).read_bytes()
    path = _write(trained, tmp_path, name, data=CRAFTED_FILES[name](good))
    for command in EVERY:
        _refuses(command, path, trained)


def test_the_untouched_checkpoint_resumes_and_samples(trained: Path, tmp_path: Path):
    path = _write(trained, tmp_path, "good", craft=lambda t, m: (t, m))
    result = CliRunner().invoke(app, ["sample", str(path), "-n", "2", "-o",
                                      str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["train", str(trained / "tiny.toml"), "-o",
                                      str(path.parent.parent), "--resume"])
    assert result.exit_code == 0, result.output
