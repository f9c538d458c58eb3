"""The contract of each component family, as checks any installed component can be put through.

Each ``check_*`` function finds the installed component by name, builds it (at its defaults or
with ``params``), and raises ``ContractError`` naming the first rule it breaks. ``ablate.testing``
is the public face of these checks for plugin authors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ablate.contracts.common import ContractError
from ablate.contracts.datasets import check_dataset
from ablate.contracts.decoders import check_decoder
from ablate.contracts.degradations import check_degradation
from ablate.contracts.ema import check_ema
from ablate.contracts.lr_schedules import check_lr_schedule
from ablate.contracts.metrics import check_metric
from ablate.contracts.optimizers import check_optimizer
from ablate.contracts.schedules import check_schedule
from ablate.plugin_host import BrokenPlugin, PluginHost, default_host

CHECKS: dict[str, Callable[..., None]] = {
    "dataset": check_dataset,
    "schedule": check_schedule,
    "decoder": check_decoder,
    "degradation": check_degradation,
    "ema": check_ema,
    "metric": check_metric,
    "optimizer": check_optimizer,
    "lr_schedule": check_lr_schedule,
}
"""The check of each family in ``ablate.registry.FAMILIES``."""


def check_component(family: str, name: str, *, params: Mapping[str, Any] | None = None,
                    host: PluginHost | None = None) -> None:
    """Check any installed component against its family's contract."""
    check = CHECKS.get(family)
    if check is None:
        raise ContractError(f"no contract is defined for family {family!r}; the families with "
                            f"one are {', '.join(CHECKS)}")
    check(name, params=params, host=host)


def components_of(distribution: str, host: PluginHost | None = None) -> list[tuple[str, str]]:
    """(family, name) of every component an installed distribution registered."""
    host = host or default_host()
    wanted = _normalised(distribution)
    return [(family, entry.component.name) for family, entry in host.registry
            if _normalised(entry.provenance.distribution) == wanted]


def broken_of(distribution: str, host: PluginHost | None = None) -> list[BrokenPlugin]:
    """The plugins of an installed distribution that broke (left out of the registry)."""
    host = host or default_host()
    wanted = _normalised(distribution)
    return [b for b in host.broken if _normalised(b.distribution) == wanted]


def _normalised(distribution: str) -> str:
    """PEP 503 normalisation: ``Ablate_Fashion.MNIST`` and ``ablate-fashion-mnist`` are one."""
    return "-".join(distribution.lower().replace("_", "-").replace(".", "-").split("-"))


__all__ = ["CHECKS", "ContractError", "check_component", "check_dataset", "check_decoder",
           "check_degradation", "check_ema", "check_lr_schedule", "check_metric",
           "check_optimizer", "check_schedule", "components_of", "broken_of"]
