"""The central bank's rule, validation and effect, and how banks price off its rate, each on its own
(:mod:`tokenomy.agents.central_bank`, :func:`tokenomy.agents.bank.rates`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from tokenomy.agents.bank import BankBatch, Banks, grant_loans, loan_yield_per_deposit, rates
from tokenomy.agents.bank import config as bank_config
from tokenomy.agents.base import MarketView
from tokenomy.agents.central_bank import (
    CentralBankBatch,
    CentralBankDecision,
    CentralBankObservation,
    CentralBanks,
    annual_inflation,
    example_answer,
    output_gap,
    taylor_rate,
)
from tokenomy.agents.central_bank import config as cb_config
from tokenomy.agents.firm import capital_user_cost
from tokenomy.scenario import Bank, CentralBank, Scenario
from tokenomy.simulation import Simulation
from tokenomy.testing.fake_openai import decide as fake_decide
from tokenomy.world import World

Build = Callable[..., tuple[Scenario, World, MarketView]]
QUICK = settings(max_examples=200, deadline=None)
TAYLOR = CentralBank()  # the defaults: Taylor's (1993) r* = 2%, pi* = 2%, weights 0.5 and 0.5


def _batch(rate: float) -> CentralBankBatch:
    return CentralBankBatch(np.array([rate]), np.array([""], dtype=object))


# -- 1. the Taylor rule ------------------------------------------------------------------------------
def test_the_defaults_are_taylors_weights() -> None:
    """r* = 2%, pi* = 2%, 0.5 on the inflation gap and 0.5 on the output gap (Taylor 1993)."""
    p = TAYLOR
    assert (p.neutral_real_rate, p.inflation_target, p.inflation_weight, p.gap_weight) == (0.02, 0.02, 0.5, 0.5)


@pytest.mark.parametrize(
    ("inflation", "gap", "rate"),
    [
        (0.02, 0.0, 0.04),  # on target, no gap: r* + pi* = 4%
        (0.04, 0.01, 0.075),  # 2% + 4% + 0.5 * 2% + 0.5 * 1%
        (0.0, 0.0, 0.01),  # 2% + 0 - 0.5 * 2%
        (0.03, -0.02, 0.045),  # 2% + 3% + 0.5 * 1% - 0.5 * 2%
        (0.0, -0.02, 0.0),  # 2% - 1% - 1% = 0 exactly
        (-0.02, -0.10, 0.0),  # 2% - 2% - 2% - 5% = -7%: floored at 0
    ],
)
def test_taylor_rate_on_hand_computed_points(inflation: float, gap: float, rate: float) -> None:
    """The annual rate r* + pi + 0.5 (pi - pi*) + 0.5 gap, floored at zero."""
    assert taylor_rate(TAYLOR, inflation, gap) == pytest.approx(rate, abs=1e-12)


@QUICK
@given(
    st.floats(-0.5, 0.5),
    st.floats(1e-4, 0.5),
    st.floats(-0.5, 0.5),
    st.floats(0.01, 5.0),
    st.floats(0.0, 5.0),
)
def test_taylor_principle_and_floor(inflation: float, rise: float, gap: float, a_pi: float, a_y: float) -> None:
    """Never below zero, the formula wherever it is positive, and off the floor the rate rises
    more than one for one with inflation (1 + a_pi per point): real rates rise with inflation."""
    p = CentralBank(inflation_weight=a_pi, gap_weight=a_y)
    formula = p.neutral_real_rate + inflation + a_pi * (inflation - p.inflation_target) + a_y * gap
    lo, hi = taylor_rate(p, inflation, gap), taylor_rate(p, inflation + rise, gap)
    assert lo == pytest.approx(max(formula, 0.0), abs=1e-12) and lo >= 0.0
    assert hi >= lo
    if lo > 0:
        assert hi - lo == pytest.approx((1 + a_pi) * rise, rel=1e-9, abs=1e-12)
        assert hi - lo > rise


# -- 2. annual inflation ------------------------------------------------------------------------------
def test_annual_inflation_is_the_price_level_over_its_level_twelve_rounds_ago(world: World) -> None:
    """The price level over the oldest of the 12 levels before it, minus 1; 0 at round 0, whose
    history starts flat at the opening level."""
    assert world.round == 0 and world.price_history.size == 12
    assert (world.price_history == world.price_index).all()
    assert annual_inflation(world) == 0.0
    world.price_history = np.linspace(100.0, 111.0, 12)  # 12 rounds ago: 100
    world.price_index = 110.0
    assert annual_inflation(world) == pytest.approx(0.10)
    world.price_index = 95.0
    assert annual_inflation(world) == pytest.approx(-0.05)


def test_annual_inflation_in_a_run_looks_back_twelve_rounds(scenario: Scenario, world: World) -> None:
    """Through ``advance``: at round t it is p_t / p_(t-12) - 1, with the opening level before round 0."""
    sim = Simulation(scenario, world)
    levels = [world.price_index]
    for t in range(1, 15):
        sim.step()
        assert sim.world.round == t
        levels.append(sim.world.price_index)
        expected = levels[t] / levels[max(t - 12, 0)] - 1.0
        assert annual_inflation(sim.world) == pytest.approx(expected, rel=1e-12, abs=1e-15), f"round {t}"
    assert len(set(levels)) > 1, "prices never moved: the look-back went untested"


# -- 3. the rule-based batch, validation, timing ------------------------------------------------------
def test_a_fixed_rule_keeps_the_scenarios_rate(build: Build) -> None:
    """``rule = "fixed"``: the scenario's policy_rate, whatever inflation and the gap do."""
    sc, world, view = build('roles.central_bank.rule="fixed"', "roles.central_bank.policy_rate=0.07")
    world.price_history[:] = world.price_index / 1.5  # 50% inflation: a Taylor rule would move
    assert CentralBanks().heuristic(world, view, sc, np.random.default_rng(0)).policy_rate.tolist() == [0.07]


def test_without_smoothing_the_rule_batch_is_taylor_rate_of_the_world(build: Build) -> None:
    """``smoothing = 0``: the rule answers ``taylor_rate`` of 12-month inflation and the output gap."""
    sc, world, view = build("roles.central_bank.smoothing=0")
    world.price_history[:] = world.price_index / 1.03  # 3% over 12 rounds
    world.output_trend = float(world.f_output.sum()) / 1.02  # output 2% above trend
    assert annual_inflation(world) == pytest.approx(0.03) and output_gap(world) == pytest.approx(0.02)
    batch = CentralBanks().heuristic(world, view, sc, np.random.default_rng(0))
    assert batch.policy_rate.tolist() == [taylor_rate(cb_config(sc), annual_inflation(world), output_gap(world))]
    assert batch.policy_rate[0] == pytest.approx(0.02 + 0.03 + 0.5 * 0.01 + 0.5 * 0.02)
    assert batch.notes.tolist() == [""]


@QUICK
@given(st.floats(0.0, 0.99), st.floats(0.0, 1.0), st.floats(-0.1, 0.3))
def test_the_rule_moves_the_rate_part_way_to_taylor_rate(
    build: Build, smoothing: float, rate: float, pi: float
) -> None:
    """Partial adjustment: smoothing x the rate in force + (1 - smoothing) x ``taylor_rate``, so
    the answer lies between the two."""
    sc, world, view = build(f"roles.central_bank.smoothing={smoothing!r}")
    world.policy_rate = rate
    world.price_history[:] = world.price_index / (1.0 + pi)
    target = taylor_rate(cb_config(sc), annual_inflation(world), output_gap(world))
    got = float(CentralBanks().heuristic(world, view, sc, np.random.default_rng(0)).policy_rate[0])
    assert got == pytest.approx(smoothing * rate + (1.0 - smoothing) * target, abs=1e-12)
    assert min(rate, target) - 1e-12 <= got <= max(rate, target) + 1e-12


@pytest.mark.parametrize(
    ("answer", "kept", "noted"),
    [(1.7, 1.0, True), (-0.1, 0.0, True), (0.05, 0.05, False), (1.0, 1.0, False), (0.0, 0.0, False)],
)
def test_validation_clips_an_answer_to_zero_one_and_notes_it(
    scenario: Scenario, world: World, answer: float, kept: float, noted: bool
) -> None:
    """An answer that got past the Decision's bounds is clipped to 0..1, with a note."""
    batch = _batch(0.04)
    batch.merge(world, 0, CentralBankDecision.model_construct(policy_rate=answer, rationale=""), scenario)
    out = batch.validated(world, scenario)
    assert out.policy_rate.tolist() == [kept]
    assert out.notes.tolist() == (["policy rate clipped to 0..1"] if noted else [""])


def test_validation_replaces_nan_by_the_rate_in_force(scenario: Scenario, world: World) -> None:
    """No answer (NaN) keeps the rate in force, noted."""
    world.policy_rate = 0.03
    out = _batch(float("nan")).validated(world, scenario)
    assert out.policy_rate.tolist() == [0.03] and out.notes.tolist() == ["policy rate clipped to 0..1"]


def test_the_rate_takes_effect_next_round(scenario: Scenario, world: World) -> None:
    """``takes_effect`` is next_round, ``apply`` sets ``World.policy_rate``; in a round the banks
    price off the rate in force and settlement pays it, and only ``regulate`` installs the new one."""
    assert CentralBankBatch.takes_effect == "next_round"
    _batch(0.065).apply(world)
    assert world.policy_rate == 0.065
    world.policy_rate = 0.04
    sim = Simulation(scenario, world)
    sim.observe()
    decided = sim.decide()
    new = float(decided["central_bank"].policy_rate[0])
    assert new != pytest.approx(0.04), "the rule chose the rate in force: the timing went untested"
    bank = decided["bank"]
    assert isinstance(bank, BankBatch)
    deposit, loan = rates(0.04, bank_config(scenario))
    paid = np.minimum(deposit, loan_yield_per_deposit(world))  # no bank pays more than its loans earn
    assert bank.deposit_rate.tolist() == paid.tolist() and bank.loan_rate.tolist() == [loan] * 2
    assert world.policy_rate == 0.04
    sim.clear()
    sim.settle()
    assert world.policy_rate == 0.04
    sim.regulate()
    assert world.policy_rate == new


# -- 4. bank rates off the policy rate --------------------------------------------------------------------
@QUICK
@given(st.floats(0.0, 1.0), st.floats(0.0, 0.1), st.floats(0.0, 0.1))
def test_bank_rates_are_the_monthly_policy_rate_less_a_markdown_plus_a_markup(
    policy: float, markdown: float, markup: float
) -> None:
    """(max(policy / 12 - markdown, 0), policy / 12 + markup) per round; fixed rates ignore policy."""
    p = Bank(deposit_markdown=markdown, loan_markup=markup)
    deposit, loan = rates(policy, p)
    assert deposit == pytest.approx(max(policy / 12 - markdown, 0.0), abs=1e-15) and deposit >= 0.0
    assert loan == pytest.approx(policy / 12 + markup, abs=1e-15)
    assert loan >= deposit
    fixed = Bank(rates="fixed", deposit_rate=0.003, loan_rate=0.009, deposit_markdown=markdown, loan_markup=markup)
    assert rates(policy, fixed) == (0.003, 0.009)


def test_the_policy_rate_reaches_the_user_cost_of_capital_only_through_the_loan_rate(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    """Raising the policy rate leaves ``capital_user_cost`` alone until ``grant_loans`` has priced
    the loans off it; then it rises by capital price x price level x the rise in the loan rate,
    which is the rise in the monthly policy rate."""
    rng = np.random.default_rng(0)
    none = np.zeros(world.n_firms, dtype=np.int64)

    def priced(policy: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        world.policy_rate = policy
        grant_loans(world, none, Banks().heuristic(world, view, scenario, rng), scenario)
        return world.f_loan_rate.copy(), capital_user_cost(world, scenario)

    rate0, cost0 = priced(0.04)
    world.policy_rate = 0.10
    np.testing.assert_array_equal(capital_user_cost(world, scenario), cost0)  # the rate alone moves nothing
    rate1, cost1 = priced(0.10)
    np.testing.assert_allclose(rate1 - rate0, 0.06 / 12, rtol=1e-9)
    assert (cost1 > cost0).all()
    np.testing.assert_allclose(cost1 - cost0, world.capital_price * world.price_index * (rate1 - rate0), rtol=1e-9)


# -- 5. the fake server's answer ------------------------------------------------------------------------
FIELDS = list(CentralBankObservation.model_fields)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(-1e300, 1e300),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@QUICK
@given(st.dictionaries(st.sampled_from([*FIELDS, "junk", ""]), JUNK, max_size=len(FIELDS) + 2), st.text(max_size=20))
def test_the_fake_servers_answer_is_a_valid_decision_for_any_observation(obs: dict[str, Any], persona: str) -> None:
    """Any observation dict with finite or non-numeric junk: a valid CentralBankDecision, whose rate
    is the Taylor rule (r* = 2%, junk read as 0, a missing target as 2%) clipped to 0..1."""
    answer = example_answer(dict(obs), persona)
    decision = CentralBankDecision.model_validate(answer)
    assert fake_decide("CentralBankDecision", dict(obs), persona) == answer

    def num(key: str, default: float = 0.0) -> float:
        v = obs.get(key, default)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else default

    pi, gap, target = num("inflation_12m"), num("output_gap"), num("inflation_target", 0.02)
    rule = 0.02 + pi + 0.5 * (pi - target) + 0.5 * gap
    if math.isfinite(rule):
        assert decision.policy_rate == pytest.approx(min(max(rule, 0.0), 1.0), abs=1e-6)


def test_the_fake_servers_answer_on_a_real_observation(world: World, view: MarketView) -> None:
    """On the round-0 observation (on target, no gap): 2% + 0 + 0.5 (0 - 2%) = 1%."""
    obs = CentralBanks().observe(world, view, 0).model_dump(mode="json")
    assert CentralBankDecision.model_validate(example_answer(obs, "")).policy_rate == pytest.approx(0.01)


@pytest.mark.parametrize(
    "obs",
    [
        {"inflation_12m": float("nan")},
        {"output_gap": float("nan")},
        {"inflation_12m": float("inf"), "output_gap": float("-inf")},
    ],
)
def test_the_fake_servers_answer_survives_non_finite_numbers(obs: dict[str, Any]) -> None:
    """NaN and infinities (Python's json.loads accepts NaN and Infinity) are junk too."""
    CentralBankDecision.model_validate(example_answer(obs, ""))


def test_the_fake_servers_answer_survives_a_huge_integer() -> None:
    """An integer too large for a float is junk too."""
    CentralBankDecision.model_validate(example_answer({"inflation_12m": 10**400}, ""))
