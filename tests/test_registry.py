"""A new role is one module and one registration: a toy role, declared here and nowhere else,
runs end to end (rules and LLM), and a user's own metric is one function."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import BaseModel, Field

import tokenomy
import tokenomy.metrics
from tokenomy import registry
from tokenomy.agents.base import Batch, DecisionModel, ExampleAnswer, MarketView, expect, note
from tokenomy.registry import RoleSpec
from tokenomy.runner import Runner
from tokenomy.scenario import RoleConfig, Scenario, ScenarioError, load_scenario
from tokenomy.testing.fake_openai import FakeOpenAIServer
from tokenomy.world import World

SMALL = ["households=120", "firms=4", "banks=2", "rounds=4", "seed=3"]


# -- the toy role: a pollster forecasts unemployment -----------------------------------------------
class PollsterConfig(RoleConfig):
    agents: int = Field(3, ge=1, le=10)
    bias: float = Field(0.0, ge=-1, le=1, description="added to the unemployment rate it sees")


class PollsterObservation(BaseModel):
    round: int
    unemployment_rate: float


class PollsterDecision(DecisionModel):
    forecast: float = Field(ge=0, le=1)


@dataclass
class PollsterBatch(Batch):
    forecast: NDArray[np.float64]
    notes: NDArray[np.object_]

    def merge(self, world: World, i: int, decision: BaseModel, scenario: Scenario) -> None:
        self.forecast[i] = expect(decision, PollsterDecision).forecast

    def validated(self, world: World, scenario: Scenario) -> PollsterBatch:
        f = np.clip(self.forecast, 0.0, 1.0)
        note(self.notes, f != self.forecast, "forecast clipped to [0, 1]")
        return PollsterBatch(f, self.notes)

    def apply(self, world: World) -> None:
        world.extra["pollster.forecast"] = self.forecast.copy()


def _answer(obs: dict[str, Any], persona: str) -> dict[str, Any]:
    return {"forecast": 0.5, "rationale": "a coin toss"}


class Pollsters:
    decision_model = PollsterDecision
    share_decision = None
    example_answers: Mapping[str, ExampleAnswer] = {"PollsterDecision": (_answer, {"forecast": 7.0})}

    def observe(self, world: World, view: MarketView, i: int) -> PollsterObservation:
        return PollsterObservation(round=view.round, unemployment_rate=view.unemployment)

    def heuristic(self, world: World, view: MarketView, scenario: Scenario, rng: np.random.Generator) -> PollsterBatch:
        cfg = scenario.roles.get("pollster", PollsterConfig)
        n = cfg.agents  # no draw from rng: the rest of the economy runs exactly as without pollsters
        return PollsterBatch(np.full(n, view.unemployment + cfg.bias), np.full(n, "", dtype=object))


@pytest.fixture
def pollster(tmp_path: Path) -> Iterator[RoleSpec]:
    prompt = tmp_path / "pollster.md"
    prompt.write_text("You are a ${role}. ${persona} ${policy_text}\nAnswer with JSON matching ${schema}.\n")
    spec = RoleSpec(
        "pollster",
        Pollsters(),
        PollsterConfig,
        count=lambda s: s.roles.get("pollster", PollsterConfig).agents,
        labels="p",
        prompt=prompt,
        columns=lambda s, n: {"forecast": np.zeros(n)},
    )
    with registry.registered(spec):
        yield spec


def test_a_role_registered_from_a_test_runs_end_to_end(pollster: RoleSpec, tmp_path: Path) -> None:
    sc = load_scenario("baseline", [*SMALL, "roles.pollster.bias=0.05", "roles.pollster.agents=3"])
    run = tokenomy.open_run(Runner(sc).run(tmp_path / "with"))
    assert run.manifest["status"] == "finished"
    assert run.manifest["scenario"]["roles"]["pollster"]["bias"] == 0.05
    assert run.manifest["policies"]["pollster"] == "heuristic"
    # its accounts close the ledger layout, named by its labels; it holds no money of its own
    world = run.world(3)
    first = world.layout.first("pollster")
    assert first == world.layout.n_accounts - 3 and world.layout.name_of(first + 2) == "p2"
    assert (world.ledger.balance[first:] == 0).all()
    # its decisions: every agent recorded every round, what its rules say, applied to the world
    d = run.decisions[run.decisions["role"] == "pollster"]
    assert list(d.groupby("round")["agent_id"].apply(list)) == [["p0", "p1", "p2"]] * 4
    forecast = d["decision_json"].map(lambda j: json.loads(j)["forecast"]).to_numpy()
    unemployment_seen = np.repeat(
        [1 - 0.95, *run.metrics["unemployment_rate"].iloc[:-1]], 3
    )  # round 0 sees the initial employment rate; round r the one round r-1 ended with
    np.testing.assert_allclose(forecast, unemployment_seen + 0.05, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(world.extra["pollster.forecast"], forecast[-3:])
    # and the rest of the economy runs exactly as without it
    registry.unregister_role("pollster")
    try:
        without = tokenomy.open_run(Runner(load_scenario("baseline", SMALL)).run(tmp_path / "without"))
    finally:
        registry.register_role(pollster)
    cols = [c for c in run.metrics.columns if c in without.metrics.columns]
    assert cols == list(without.metrics.columns)
    np.testing.assert_array_equal(run.metrics[cols].to_numpy(), without.metrics.to_numpy())
    money = run.metrics["money_supply_cents"].to_numpy()
    flows = (run.metrics["issued_cents"] - run.metrics["destroyed_cents"]).to_numpy()
    np.testing.assert_array_equal(money[1:], money[:-1] + flows[1:])


def test_a_registered_section_is_validated_and_unregistered_is_unknown(pollster: RoleSpec) -> None:
    with pytest.raises(ScenarioError, match=r"roles\.pollster\.bias"):
        load_scenario("baseline", ["roles.pollster.bias=5"])
    with pytest.raises(ValueError, match="already registered"):
        registry.register_role(pollster)
    registry.unregister_role("pollster")
    try:
        with pytest.raises(ScenarioError, match=r"roles\.pollster.*unknown field"):
            load_scenario("baseline", ["roles.pollster.bias=0.1"])
        assert "pollster" not in [name for name, _ in load_scenario("baseline").roles]
    finally:
        registry.register_role(pollster)


def test_an_llm_drives_the_registered_role_through_the_fake_server(
    pollster: RoleSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-pollster-0123456789")
    with FakeOpenAIServer(model="fake-model") as srv:
        sc = load_scenario(
            "baseline",
            [*SMALL, 'llm.model="fake-model"', f'llm.base_url="{srv.base_url}"', "roles.pollster.policy=llm"],
        )
        with Runner(sc) as runner:
            run = tokenomy.open_run(runner.run(tmp_path / "llm"))
        assert srv.stats["by_decision"] == {"PollsterDecision": 3 * 4}
    llm = run.decisions[(run.decisions["role"] == "pollster") & (run.decisions["policy"] == "llm")]
    assert len(llm) == 3 * 4 and (llm["fallback_reason"] == "").all()
    assert set(llm["rationale"]) == {"a coin toss"}
    assert run.metrics["llm_calls_pollster"].tolist() == [3, 3, 3, 3]
    np.testing.assert_array_equal(run.world(3).extra["pollster.forecast"], [0.5, 0.5, 0.5])
    assert run.manifest["llm"]["roles"]["pollster"]["prompt"].endswith("pollster.md")


def test_a_users_metric_is_one_function(tmp_path: Path) -> None:
    sc = load_scenario("baseline", SMALL)

    def median_wealth(d: tokenomy.metrics.RoundData) -> float:
        return float(np.median(d.wealth)) / 100

    run = tokenomy.open_run(Runner(sc, metrics={"median_wealth": median_wealth}).run(tmp_path / "m"))
    w = run.world(3)
    expected = float(np.median(w.household_balance() + w.household_token_wealth())) / 100
    assert run.metrics["median_wealth"].iloc[-1] == pytest.approx(expected)
    assert run.manifest["extra_metrics"] == ["median_wealth"]
    with pytest.raises(ValueError, match="built-in column"):
        Runner(sc, metrics={"gdp": median_wealth}).run(tmp_path / "clash")
