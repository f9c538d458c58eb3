"""Cold Diffusion's image transforms D(x, s) at a per-image severity s in [0, 1].

Every transform is the identity at s = 0 and continuous in s, so any schedule can drive it.
Blur and pixelate are separable linear maps, D(x) = M_rows x M_cols^T with one pair of
matrices per image, so a batch whose images sit at different severities is degraded by two
batched matrix products. Masking and fading move each pixel towards a target:
D(x) = x + m (target - x) with a weight m in [0, 1].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch


class Transform(ABC):
    """D(x, s): images (B, C, H, W) and severities (B,) -> degraded images (B, C, H, W)."""

    @abstractmethod
    def __call__(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor: ...

    def fit(self, x0: torch.Tensor) -> None:  # noqa: B027 - optional: most learn nothing
        """Take any data-derived parameter from training images; most transforms need none."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What ``fit`` learnt, as tensors (empty when it learns nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:  # noqa: B027 - as fit
        """Restore what ``state_dict`` returned."""


class Separable(Transform):
    """A linear transform acting on rows and columns separately: D(x) = M_H x M_W^T."""

    def __init__(self) -> None:
        self._constants: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        rows = self.matrices(x.shape[-2], s.to(x.dtype))
        cols = self.matrices(x.shape[-1], s.to(x.dtype))
        return rows[:, None] @ x @ cols.transpose(-1, -2)[:, None]

    @abstractmethod
    def matrices(self, n: int, s: torch.Tensor) -> torch.Tensor:
        """The (B, n, n) matrices acting along an axis of n pixels at severities s (B,)."""

    @abstractmethod
    def constants(self, n: int) -> torch.Tensor:
        """The severity-independent tensor ``matrices`` combines (computed once per size)."""

    def cached(self, n: int, like: torch.Tensor) -> torch.Tensor:
        key = (n, like.device, like.dtype)
        if key not in self._constants:
            self._constants[key] = self.constants(n).to(device=like.device, dtype=like.dtype)
        return self._constants[key]


class GaussianBlur(Separable):
    """Gaussian blur of width sigma = s * sigma_max, replicating the border pixels."""

    def __init__(self, sigma_max: float) -> None:
        super().__init__()
        self.sigma_max = sigma_max
        self.radius = math.ceil(3 * sigma_max)

    def constants(self, n: int) -> torch.Tensor:
        # shifts[k, i, j] = 1 where j = clamp(i + k - radius): pixel i reads its k-th tap there.
        offsets = torch.arange(-self.radius, self.radius + 1)
        sources = (torch.arange(n)[None, :] + offsets[:, None]).clamp(0, n - 1)
        return torch.nn.functional.one_hot(sources, n).double()

    def matrices(self, n: int, s: torch.Tensor) -> torch.Tensor:
        offsets = torch.arange(-self.radius, self.radius + 1, device=s.device, dtype=s.dtype)
        # A width of 1e-3 pixels leaves every tap but the centre at exp(-5e5) = 0: the identity.
        sigma = (s * self.sigma_max).clamp_min(1e-3)
        taps = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
        taps = taps / taps.sum(dim=1, keepdim=True)
        return torch.einsum("bk,kij->bij", taps, self.cached(n, s))


class BlockAverage(Separable):
    """Average over blocks of 2^k pixels (down-sample by 2^k, up-sample by repetition).

    Level k = 0..K-1 averages blocks of 2^k pixels on a grid with a boundary at the centre
    pixel n // 2, and level K = ceil(log2 n) averages the whole axis. The grids are nested, so
    each level only removes detail from the one before; s moves continuously through the levels
    (k = s K, interpolating linearly between two levels), from the image at s = 0 to its mean at
    s = 1, and the distance to the image grows with s.
    """

    def constants(self, n: int) -> torch.Tensor:
        levels = math.ceil(math.log2(n)) if n > 1 else 0
        averages = torch.ones(levels + 1, n, n, dtype=torch.float64) / n  # the last: all of it
        for k in range(levels):
            block = torch.div(torch.arange(n) - n // 2, 2**k, rounding_mode="floor")
            same = (block[:, None] == block[None, :]).double()
            averages[k] = same / same.sum(dim=1, keepdim=True)
        return averages

    def matrices(self, n: int, s: torch.Tensor) -> torch.Tensor:
        averages = self.cached(n, s)
        levels = len(averages) - 1
        k = s * levels
        finer = k.floor().clamp(0, levels)
        coarser = (finer + 1).clamp(max=levels)
        weight = (k - finer)[:, None, None]
        return torch.lerp(averages[finer.long()], averages[coarser.long()], weight)


class ProgressiveMask(Transform):
    """Hide pixels one after another, each fading to ``fill`` over its share of the severity.

    Each pixel has a level l in {0, ..., L - 1} and is hidden by m = clamp(s L - l, 0, 1):
    level 0 goes first and everything is hidden at s = 1. ``square`` levels are the rings around
    the centre (a centred square grows ring by ring); ``random`` levels are a random order of
    all pixels, drawn once from ``seed``.
    """

    def __init__(self, pattern: str, seed: int, fill: float) -> None:
        self.pattern = pattern
        self.seed = seed
        self.fill = fill
        self._levels: dict[tuple[int, int, torch.device], tuple[torch.Tensor, int]] = {}

    def __call__(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        level, count = self.levels(x.shape[-2], x.shape[-1], x.device)
        m = (s.to(x.dtype)[:, None, None, None] * count - level.to(x.dtype)).clamp(0, 1)
        return x + m * (self.fill - x)

    def levels(self, height: int, width: int,
               device: torch.device) -> tuple[torch.Tensor, int]:
        """Each pixel's level (H, W) and the number of levels L, computed once per size."""
        key = (height, width, device)
        if key not in self._levels:
            if self.pattern == "random":
                generator = torch.Generator().manual_seed(self.seed)
                level = torch.randperm(height * width, generator=generator).view(height, width)
            else:
                rows = (torch.arange(height) - (height - 1) / 2).abs()
                cols = (torch.arange(width) - (width - 1) / 2).abs()
                level = torch.maximum(rows[:, None], cols[None, :]).floor().long()
            count = int(level.max()) + 1
            self._levels[key] = (level.to(device=device, dtype=torch.float32), count)
        return self._levels[key]


class LinearFade(Transform):
    """Fade linearly towards a target image: D(x, s) = (1 - s) x + s target.

    With ``fits_mean`` the target is the mean training image once ``fit`` has seen the data;
    until then it is the constant ``target``.
    """

    def __init__(self, target: float, *, fits_mean: bool) -> None:
        self.target = torch.tensor(target)
        self.fits_mean = fits_mean

    def __call__(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.target.device != x.device:  # moved once, not on every training step
            self.target = self.target.to(x.device)
        target = self.target.to(x.dtype).expand_as(x)
        return torch.lerp(x, target, s.to(x.dtype)[:, None, None, None])

    def fit(self, x0: torch.Tensor) -> None:
        if self.fits_mean:
            self.target = x0.mean(dim=0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"target": self.target} if self.fits_mean else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.fits_mean:
            self.target = state["target"]
