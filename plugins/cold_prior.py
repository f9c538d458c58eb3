"""A low-rank Gaussian fitted to fully degraded images: where cold sampling starts.

Deterministic degradations send every image to a point of a small set (a fully blurred digit is
almost a flat grey of the digit's brightness), so a sampler that always starts from the same x_T
always draws the same picture. Bansal et al. (2022, Sec. 5) start instead from a distribution
fitted to the degraded training images. Fully degraded images are strongly correlated across
pixels (smooth for blur, blocky for pixelate), so an independent Gaussian per pixel would draw
starts that no degradation produces; this one keeps the covariance along its leading
principal directions: x_T = mu + U diag(sqrt(lambda)) z, z ~ N(0, I_k).
"""

from __future__ import annotations

import torch

from ablate.errors import AblateError


class LowRankGaussian:
    """N(mu, U diag(lambda) U^T) over flattened images, with the k largest eigenpairs kept."""

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor, scale: torch.Tensor) -> None:
        self.mean = mean  # mu, (D,)
        self.basis = basis  # U, (D, k): the principal directions
        self.scale = scale  # sqrt(lambda), (k,): the standard deviation along each direction

    @classmethod
    def fit(cls, images: torch.Tensor, rank: int) -> LowRankGaussian:
        """Fit to images (N, ...) from their mean and sample covariance (N >= 1).

        The decomposition runs once, on the host in float64 (some devices lack float64).
        """
        x = images.flatten(1).to(device="cpu", dtype=torch.float64)
        mean = x.mean(dim=0)
        centred = x - mean
        covariance = centred.T @ centred / max(len(x) - 1, 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending order
        k = min(rank, len(mean))
        scale = eigenvalues[-k:].clamp_min(0).sqrt()
        like = {"device": images.device, "dtype": images.dtype}
        return cls(mean.to(**like), eigenvectors[:, -k:].contiguous().to(**like),
                   scale.to(**like))

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Draw ``shape[0]`` images of ``shape`` (the fitted images' size)."""
        self._check(shape)
        z = torch.randn((shape[0], len(self.scale)), generator=generator,
                        device=self.mean.device, dtype=self.mean.dtype)
        return (self.mean + (z * self.scale) @ self.basis.T).view(shape)

    def mean_images(self, shape: tuple[int, ...]) -> torch.Tensor:
        """``shape[0]`` copies of mu: the deterministic start every sample shares."""
        self._check(shape)
        return self.mean.view(shape[1:]).expand(shape)

    def _check(self, shape: tuple[int, ...]) -> None:
        if torch.Size(shape[1:]).numel() != len(self.mean):
            raise AblateError(f"the cold prior was fitted on images of {len(self.mean)} values, "
                              f"but {tuple(shape[1:])} images were asked for")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "basis": self.basis, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> LowRankGaussian:
        return cls(state["mean"], state["basis"], state["scale"])
