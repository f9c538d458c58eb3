"""What every contract check shares: finding the component under test and failing clearly."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import torch

from ablate.components import Component, build_component
from ablate.datasets import Dataset
from ablate.errors import AblateError
from ablate.plugin_host import PluginHost, default_host, unknown_component
from ablate.registry import FAMILIES


class ContractError(AssertionError):
    """A component breaks a rule of its family's contract; the message names the rule.

    An ``AssertionError``, so pytest reports it as a failed test rather than an error.
    """


def resolve(family: str, name: str, params: Mapping[str, Any] | None,
            host: PluginHost | None) -> Component:
    """The installed component ``name`` built with ``params``."""
    host = host or default_host()
    if family not in FAMILIES:
        raise ContractError(f"unknown family {family!r}; the families are "
                            f"{', '.join(FAMILIES)}")
    cls = host.registry.get(family, name)
    if cls is None:  # its declaration (help, defaults in bounds) was checked at registration
        raise ContractError(str(unknown_component(host, family, name, source=None, key=None)))
    try:
        return build_component(cls, params or {}, source=None, key="params")
    except AblateError as exc:
        given = f"parameters {dict(params)}" if params else "its defaults"
        raise ContractError(f"{family} {name!r} cannot be built with {given}: {exc}") from None


def violation(component: Component, rule: str) -> ContractError:
    """The failure of ``component`` against ``rule``, a sentence saying what went wrong."""
    return ContractError(f"{component.family} {component.name!r}: {rule}")


def image_shape_of(dataset: str, host: PluginHost | None) -> tuple[int, int, int]:
    """(C, H, W) of one image of an installed dataset, read from its test split."""
    return cast(Dataset, resolve("dataset", dataset, None, host)).load("test").shape


@contextmanager
def seeded_global_rng(device: torch.device) -> Iterator[None]:
    """The global RNG seeded to 0 for module initialisers and dropout, restored afterwards so
    that a check leaves the caller's random state as it found it."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        yield


def generator(device: torch.device, seed: int = 0) -> torch.Generator:
    """A seeded generator on ``device``: the checks never touch the global RNG state."""
    return torch.Generator(device).manual_seed(seed)
