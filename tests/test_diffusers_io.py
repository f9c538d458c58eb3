"""diffusers in and out: the diffusers-unet decoder, and a trained run exported as a
DDPMPipeline that diffusers loads (local files only) and samples from. The decoder's contract
is checked with every built-in in tests/test_contracts.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import DDPMPipeline
from typer.testing import CliRunner

from ablate.cli import app
from ablate.sampling import load_trained
from ablate.training import Trainer
from tests.conftest import tiny_config

runner = CliRunner()
TINY_UNET = {"name": "diffusers-unet", "block_out_channels": [8, 16], "norm_num_groups": 4,
             "attention_head_dim": 4, "num_train_timesteps": 20}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("export")
    config = tiny_config(steps=4, decoder=TINY_UNET, scaling="symmetric", ema="ema",
                         degradation={"name": "gaussian", "prediction": "v"})
    result = Trainer(config, folder / "run").run()
    out = runner.invoke(app, ["export", str(result.checkpoint), "-o", str(folder / "pipe")])
    assert out.exit_code == 0, out.output
    return result.checkpoint, folder / "pipe"


def test_export_writes_the_ddpm_pipeline_layout(exported):
    _, pipe = exported
    assert (pipe / "model_index.json").is_file()
    assert (pipe / "unet" / "config.json").is_file()
    assert (pipe / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (pipe / "scheduler" / "scheduler_config.json").is_file()
    assert not list(pipe.rglob("*.bin"))  # no pickle


def test_diffusers_loads_the_export_with_its_schedule_and_samples_from_it(exported):
    checkpoint, folder = exported
    parts = load_trained(checkpoint, device="cpu")
    pipe = DDPMPipeline.from_pretrained(folder, local_files_only=True)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    torch.testing.assert_close(pipe.scheduler.alphas_cumprod.double(),
                               parts.config.schedule.alpha_bar(20).double(), rtol=1e-5, atol=1e-7)
    images = pipe(batch_size=2, num_inference_steps=20, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 28, 28, 1) and ((images >= 0) & (images <= 1)).all()


def test_the_exported_unet_gives_ablates_decoder_outputs(exported):
    checkpoint, folder = exported
    parts = load_trained(checkpoint, device="cpu")
    pipe = DDPMPipeline.from_pretrained(folder, local_files_only=True)
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([1, 7, 20])  # ablate's t in 1..T; diffusers' timestep is t - 1
    model = parts.averager.sampling_model().eval()
    with torch.no_grad():
        ours = model(x, t.float() / 20)
        theirs = pipe.unet(x, t - 1).sample
    torch.testing.assert_close(theirs, ours)


def test_export_names_the_decoders_that_can_export(tmp_path):
    result = Trainer(tiny_config(steps=4), tmp_path / "run").run()
    out = runner.invoke(app, ["export", str(result.checkpoint), "-o", str(tmp_path / "pipe")])
    assert out.exit_code == 2
    assert "decoder 'cnn' is not diffusers-compatible" in out.output
    assert "decoders that export: diffusers-unet" in out.output


def test_export_refuses_a_run_in_the_centered_pixel_range(tmp_path):
    config = tiny_config(steps=4, decoder=TINY_UNET)  # scaling = "centered", the default
    result = Trainer(config, tmp_path / "run").run()
    out = runner.invoke(app, ["export", str(result.checkpoint), "-o", str(tmp_path / "pipe")])
    assert out.exit_code == 2 and "scaling = 'centered'" in out.output
    assert not (tmp_path / "pipe").exists()
