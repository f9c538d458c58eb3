"""``ablate export``: a trained Gaussian-degradation run as a diffusers ``DDPMPipeline`` folder.

The folder is what ``DDPMPipeline.save_pretrained`` writes (``model_index.json``, ``unet/`` with
its config and safetensors weights, ``scheduler/`` with its config), so
``DDPMPipeline.from_pretrained(DIR)`` loads it. The UNet holds the weights ablate samples with
(the EMA average when the run kept one); the ``DDPMScheduler`` gets the run's own betas
(``trained_betas``, so any schedule, zero-terminal-SNR included, is kept exactly), its
prediction type, ancestral variance and x0 clipping.

What the export assumes: the decoder is diffusers-compatible (it declares ``unet_config`` and
builds a module whose ``unet`` is the diffusers UNet; the built-in one is ``diffusers-unet``)
with its ``num_train_timesteps`` equal to the run's T, so diffusers' timestep k is ablate's
t = k + 1; and the run used ``scaling = "symmetric"``: diffusers pipelines take samples in
[-1, 1] and return ``sample / 2 + 0.5``, which for ablate's default ``centered`` range
(x/255 - 0.5) would give washed-out images, so such runs are refused rather than exported wrong.
"""

from __future__ import annotations

from pathlib import Path

from ablate.errors import AblateError
from ablate.plugin_host import PluginHost, default_host
from ablate.schedules import betas_from_alpha_bar

PREDICTION_TYPES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
VARIANCE_TYPES = {"beta": "fixed_large", "beta_tilde": "fixed_small"}


class ExportError(AblateError):
    """The run cannot be written as a diffusers pipeline; the message says why and what can."""

    exit_code = 2


def exportable_decoders(host: PluginHost) -> list[str]:
    """Installed decoders that build a diffusers UNet (they declare ``unet_config``)."""
    return [name for name, entry in sorted(host.registry.entries["decoder"].items())
            if hasattr(entry.component, "unet_config")]


def export_pipeline(checkpoint: Path, output: Path, host: PluginHost | None = None) -> Path:
    """Write the checkpoint's model as a DDPMPipeline folder; returns the folder."""
    from diffusers import DDPMPipeline, DDPMScheduler

    from ablate.sampling import load_trained

    host = host or default_host()
    parts = load_trained(checkpoint, device="cpu", host=host)
    config = parts.config
    decoder, degradation = config.decoder, config.degradation
    if not hasattr(decoder, "unet_config"):
        raise ExportError(f"{checkpoint}: decoder {decoder.name!r} is not diffusers-compatible; "
                          f"decoders that export: {', '.join(exportable_decoders(host))}")
    if degradation.name != "gaussian":
        raise ExportError(f"{checkpoint}: only the gaussian degradation exports as a DDPM "
                          f"pipeline, not {degradation.name!r}")
    if config.scaling != "symmetric":
        raise ExportError(f"{checkpoint}: the run used scaling = {config.scaling!r}, but "
                          f"diffusers pipelines work in [-1, 1]; train with scaling = "
                          f"\"symmetric\" to export")
    if getattr(decoder, "num_train_timesteps", config.T) != config.T:
        raise ExportError(f"{checkpoint}: the decoder's num_train_timesteps "
                          f"({decoder.num_train_timesteps}) differs from T ({config.T}), so its "
                          f"timesteps are not diffusers'; train with "
                          f"run.decoder.num_train_timesteps = {config.T}")
    unet = parts.averager.sampling_model().unet
    betas = betas_from_alpha_bar(config.schedule.alpha_bar(config.T).double())
    scheduler = DDPMScheduler(
        num_train_timesteps=config.T, trained_betas=betas.tolist(),
        prediction_type=PREDICTION_TYPES[degradation.prediction],
        variance_type=VARIANCE_TYPES[degradation.variance], clip_sample=degradation.clip_x0,
        clip_sample_range=1.0)
    output.mkdir(parents=True, exist_ok=True)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(output, safe_serialization=True)
    return output
