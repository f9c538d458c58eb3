"""The contract test kit for plugin authors: one line checks a component against its family.

Plain functions, for one component each::

    from ablate.testing import check_schedule

    def test_my_schedule_keeps_the_contract():
        check_schedule("my-schedule")

or one parametrised test per component that an installed distribution registers::

    from ablate.testing import contract_tests

    test_contracts = contract_tests("ablate-my-plugin")

Installed with ablate, this module is also a pytest plugin (entry point group ``pytest11``): the
fixture ``ablate_contract`` is ``check_component``. pytest loads it in every session of an
environment that has ablate, so torch and the checks are imported only when a check is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ablate.contracts import (
        ContractError,
        check_component,
        check_dataset,
        check_decoder,
        check_degradation,
        check_ema,
        check_lr_schedule,
        check_metric,
        check_optimizer,
        check_schedule,
    )
    from ablate.plugin_host import PluginHost

_LAZY = {"ContractError", "check_component", "check_dataset", "check_decoder",
         "check_degradation", "check_ema", "check_lr_schedule", "check_metric",
         "check_optimizer", "check_schedule"}

__all__ = ["ContractError", "ablate_contract", "check_component", "check_dataset", "check_decoder",
           "check_degradation", "check_ema", "check_lr_schedule", "check_metric",
           "check_optimizer", "check_schedule", "contract_tests"]


def __getattr__(name: str) -> Any:
    """Import the checks (and torch) on first use rather than when pytest loads this plugin."""
    if name in _LAZY:
        import ablate.contracts

        return getattr(ablate.contracts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


BROKEN = "broken-plugin"
"""The family of contract_tests' case for a broken plugin."""


def contract_tests(distribution: str, *,
                   host: PluginHost | None = None) -> Callable[[str, str], None]:
    """A pytest test, parametrised over every component ``distribution`` registers, that checks
    each against its family's contract. Assign it to a ``test_`` name in a test module.

    Each broken plugin of the distribution (left out of the registry, so none of its
    components would be checked) is one more case, which fails with the reason. When the
    distribution registered nothing (not installed) the test has one case, which fails saying so.
    """
    from ablate.contracts import ContractError, broken_of, check_component, components_of

    cases = components_of(distribution, host)
    broken = {b.name: b for b in broken_of(distribution, host)}
    cases += [(BROKEN, name) for name in broken]

    @pytest.mark.parametrize(("family", "name"), cases or [("", "")],
                             ids=[f"{f}:{n}" for f, n in cases] or [distribution])
    def test_component_keeps_its_contract(family: str, name: str) -> None:
        if family == BROKEN:
            raise ContractError(broken[name].line())
        if not family:
            raise ContractError(f"distribution {distribution!r} registered no components: is it "
                                f"installed (pip install -e .), and does `ablate list-plugins` "
                                f"show it as broken?")
        check_component(family, name, host=host)

    return test_component_keeps_its_contract


@pytest.fixture
def ablate_contract() -> Callable[..., None]:
    """``check_component(family, name, *, params=None, host=None)``, as a fixture."""
    from ablate.contracts import check_component

    return check_component
