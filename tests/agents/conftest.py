"""A small economy for testing each role's rules, validation and effects on their own.

Sixty households, four firms and two banks at round 0 of the baseline scenario: big enough that
every rule has agents on both sides of its thresholds, small enough to build in milliseconds, so
a test that changes the world builds a fresh one (``build``, once per hypothesis example too).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from tokenomy.agents.base import MarketView
from tokenomy.initial import build_world
from tokenomy.scenario import Scenario, load_scenario
from tokenomy.simulation import Simulation
from tokenomy.world import World

# the rules' worked examples are for firms that open without loans (the default opens them owing
# initial.firm_leverage of their plant); tests of loans set them
SMALL = ["households=60", "firms=4", "banks=2", "initial.firm_leverage=0"]

Economy = tuple[Scenario, World, MarketView]


def build_small(*overrides: str) -> Economy:
    """The baseline scenario at the small size (with ``--set`` style overrides), its round-0 world
    from seed 1, and what every agent may know of it."""
    scenario = load_scenario("baseline", [*SMALL, *overrides])
    world = build_world(scenario, np.random.default_rng(1))
    return scenario, world, Simulation(scenario, world).observe()


@pytest.fixture(scope="session")
def build() -> Callable[..., Economy]:
    """``build("roles.firm.equity_issuance=false")``: a fresh small economy on every call.

    Session-scoped (it holds no state), so hypothesis tests may use it.
    """
    return build_small


@pytest.fixture
def economy() -> Economy:
    return build_small()


@pytest.fixture
def scenario(economy: Economy) -> Scenario:
    return economy[0]


@pytest.fixture
def world(economy: Economy) -> World:
    return economy[1]


@pytest.fixture
def view(economy: Economy) -> MarketView:
    return economy[2]
