"""Exceptions raised inside plugin code at run time, turned into one line that names the plugin
and the component, with the full traceback kept in the run folder (``error.txt``).

A plugin's bug (a wrong output shape, a default its own code cannot handle) would otherwise end
a run with a long torch traceback that names neither. The blame goes to the innermost frame of
the traceback that runs a component's own module; ablate's core and torch frames are skipped.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ablate.components import Component
from ablate.decoder_guard import DecoderOutputError
from ablate.errors import AblateError
from ablate.plugin_host import PluginHost
from ablate.run_config import RunConfig

if TYPE_CHECKING:
    from ablate.eval_config import EvalConfig

TRACEBACK_NAME = "error.txt"


class PluginFault(AblateError):
    """A plugin's code raised while ablate ran it; its traceback is in the run folder."""

    exit_code = 1


@dataclass(frozen=True)
class Culprit:
    """The component a fault is blamed on, and the plugin and distribution that provided it."""

    plugin: str
    distribution: str
    family: str
    name: str

    def describe(self) -> str:
        return f"{self.family} {self.name!r} of plugin {self.plugin!r} ({self.distribution})"


def blame(exc: BaseException, components: Iterable[Component],
          host: PluginHost) -> Culprit | None:
    """The component (of those in use) whose module raised ``exc``, innermost frame first."""
    by_module: dict[str, list[Component]] = {}
    for component in components:
        by_module.setdefault(type(component).__module__, []).append(component)
    if isinstance(exc, DecoderOutputError):  # raised by ablate's guard, about the decoder
        chosen = next((c for c in components if c.family == "decoder"), None)
        return _culprit(chosen, host) if chosen else None
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
        candidates = by_module.get(frame.f_globals.get("__name__", ""))
        if not candidates:
            continue
        owner = frame.f_locals.get("self")
        chosen = next((c for c in candidates if owner is c or isinstance(owner, type(c))),
                      candidates[0])
        return _culprit(chosen, host)
    return None


def _culprit(component: Component, host: PluginHost) -> Culprit:
    entry = host.registry.entries.get(component.family, {}).get(component.name)
    plugin = entry.provenance.plugin if entry else "unknown"
    distribution = entry.provenance.distribution if entry else "unknown"
    return Culprit(plugin, distribution, component.family, component.name)


@contextmanager
def plugin_faults(components: Iterable[Component], folder: Path | None,
                  host: PluginHost) -> Iterator[None]:
    """Re-raise an exception from a component's code as one PluginFault line; the traceback
    goes to ``folder/error.txt`` (or stays on stderr where there is no folder). ablate's own
    errors and exceptions no component raised pass through unchanged."""
    components = list(components)
    try:
        yield
    except AblateError:
        raise
    except Exception as exc:  # a plugin's bug of any kind: that is the point
        culprit = blame(exc, components, host)
        if culprit is None:
            raise
        text = "".join(traceback.format_exception(exc))
        where = _keep(text, folder)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise PluginFault(
            f"{culprit.describe()} raised {type(exc).__name__}: {first}"
            f"{f'; the traceback is in {where}' if where else ''} (a bug in that plugin: "
            f"report it to its authors, or choose another {culprit.family})") from None


def _keep(text: str, folder: Path | None) -> Path | None:
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / TRACEBACK_NAME
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            pass
    sys.stderr.write(text)
    return None


def run_components(config: RunConfig, evaluation: EvalConfig | None = None,
                   host: PluginHost | None = None) -> list[Component]:
    """The components a run uses: each field of the configuration that is one, and the
    metrics its evaluation scores."""
    used = [value for value in vars(config).values() if isinstance(value, Component)]
    if evaluation is not None:
        from ablate.evaluation import resolve_metrics

        used += resolve_metrics(evaluation.metrics, host)
    return used


def run_folder_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (``RUN/checkpoints/last.safetensors``), else the
    checkpoint's own folder: where a plugin fault's traceback is kept."""
    parent = checkpoint.parent
    return parent.parent if parent.name == "checkpoints" else parent
