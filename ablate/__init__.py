"""ablate: a plugin-based ablation toolkit for diffusion models."""

from importlib.metadata import PackageNotFoundError, version

import pluggy

hookimpl = pluggy.HookimplMarker("ablate")
"""Marker for plugin hook implementations: ``@ablate.hookimpl``."""

try:
    __version__ = version("ablate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__", "hookimpl"]
