"""Decoders: shapes, time conditioning per image, trainability, presets and size errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from ablate_builtins.cnn import Cnn
from ablate_builtins.unet import Unet
from ablate_builtins.unet_witt import UnetWitt

from ablate.assembly import assemble
from ablate.config import parse_run
from ablate.decoders import Decoder
from ablate.errors import ConfigError
from ablate.training import Trainer
from tests.conftest import tiny_config

TINY: dict[str, Decoder] = {
    "cnn": Cnn(channels=(4, 8), time_hidden=16),
    "unet": Unet(base_width=8, channel_mult=(1, 2), groups=4, heads=2, attention_levels=(1,)),
    "unet-witt": UnetWitt(width=8, time_dim=16, heads=2),
}


def built(name: str, size: int = 28) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TINY[name].build(1, size).eval()


def images(batch: int, size: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("size", [28, 32])
def test_output_has_the_input_shape(name: str, size: int):
    x = images(3, size)
    with torch.no_grad():
        assert built(name, size)(x, torch.tensor([0.1, 0.5, 1.0])).shape == x.shape


@pytest.mark.parametrize("name", TINY)
def test_time_input_changes_the_output(name: str):
    model, x = built(name), images(2)
    with torch.no_grad():
        early = model(x, torch.full((2,), 0.05))
        late = model(x, torch.full((2,), 0.95))
    assert (early - late).abs().max() > 1e-3


@pytest.mark.parametrize("name", TINY)
def test_each_image_gets_its_own_t(name: str):
    model, x = built(name), images(2)
    t = torch.tensor([0.1, 0.9])
    with torch.no_grad():
        together = model(x, t)
        apart = torch.cat([model(x[:1], t[:1]), model(x[1:], t[1:])])
    torch.testing.assert_close(together, apart, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", TINY)
def test_one_optimisation_step_lowers_a_fixed_loss(name: str):
    model = built(name).train()
    x, target, t = images(4), images(4, seed=1), torch.linspace(0.1, 0.9, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = F.mse_loss(model(x, t), target)
    before.backward()
    assert all(p.grad is not None for p in model.parameters())
    optimizer.step()
    with torch.no_grad():
        assert F.mse_loss(model(x, t), target) < before.detach()


def test_cnn_default_is_the_coursework_model_with_291217_parameters():
    model = Cnn().build(1, 28)
    assert Cnn().channels == (16, 32, 32, 16)
    assert sum(p.numel() for p in model.parameters()) == 291_217


def test_cnn_wide_preset_has_channels_64_128_256_128_64():
    model = parse_run({"decoder": {"name": "cnn", "preset": "wide"}}, source="test") \
        .decoder.build(1, 28)
    assert [block[0].out_channels for block in model.blocks] == [64, 128, 256, 128, 64]


def test_cnn_channels_conflicting_with_a_preset_are_a_config_error():
    with pytest.raises(ConfigError, match="conflict with preset 'wide'"):
        parse_run({"decoder": {"name": "cnn", "preset": "wide", "channels": [4, 8]}},
                  source="test")


def test_cnn_channels_equal_to_the_preset_are_accepted():
    config = parse_run({"decoder": {"name": "cnn", "preset": "wide",
                                    "channels": [64, 128, 256, 128, 64]}}, source="test")
    assert config.decoder == Cnn(preset="wide")


def test_unet_with_more_levels_than_the_image_can_halve_is_a_config_error():
    unet = Unet(base_width=8, channel_mult=(1, 2, 2, 2), groups=4, attention_levels=())
    with pytest.raises(ConfigError, match="28x28 images do not allow.*at most 3 levels"):
        unet.build(1, 28)


def test_unet_attention_at_a_missing_level_is_a_config_error():
    with pytest.raises(ConfigError, match=r"attention_levels \[2\] must name levels.*0 to 1"):
        parse_run({"decoder": {"name": "unet", "channel_mult": [1, 2]}}, source="test")


def test_unet_groups_must_divide_every_width():
    with pytest.raises(ConfigError, match="groups"):
        parse_run({"decoder": {"name": "unet", "base_width": 12, "groups": 8}}, source="test")


def test_unet_witt_rejects_images_it_cannot_halve_twice():
    with pytest.raises(ConfigError, match="30x30 images do not allow"):
        TINY["unet-witt"].build(1, 30)


def test_unet_witt_embedding_width_does_not_depend_on_T():
    decoder = {"name": "unet-witt", "width": 8, "time_dim": 16, "heads": 2}

    def model(T: int) -> torch.nn.Module:
        config = parse_run({"T": T, "decoder": decoder}, source="test")
        return assemble(config, (1, 28, 28), torch.device("cpu")).model

    few, many = model(10), model(1000)
    assert few.down1.time[1].in_features == many.down1.time[1].in_features == 16
    assert ({k: v.shape for k, v in few.state_dict().items()}
            == {k: v.shape for k, v in many.state_dict().items()})


def test_unet_trains_through_the_engine(tmp_path: Path):
    decoder = {"name": "unet", "base_width": 8, "channel_mult": [1, 2], "groups": 4,
               "heads": 2, "attention_levels": []}
    result = Trainer(tiny_config(decoder=decoder, steps=2), tmp_path / "run").run()
    assert result.checkpoint.exists()
