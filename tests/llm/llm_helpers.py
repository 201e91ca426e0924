"""Shared pieces of the LLM tests: a small all-LLM scenario against the fake server, and checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import tokenomy
from tokenomy.runner import Runner
from tokenomy.scenario import load_scenario
from tokenomy.testing.fake_openai import FakeOpenAIServer

KEY = "sk-test-RECOGNISABLE-0123456789abcdef"
SMALL = ["households=40", "firms=3", "banks=1", "rounds=3", "record.household_decisions=5"]
ALL_LLM = [
    "roles.household.policy=llm",
    "roles.household.llm_share=0.25",
    "roles.firm.policy=llm",
    "roles.bank.policy=llm",
    "roles.network.policy=llm",
    "roles.regulator.policy=llm",
]
CALLS_PER_ROUND = 10 + 3 + 1 + 2 + 1  # households (25% of 40), firms, bank, two operators, regulator


def llm_sets(srv: FakeOpenAIServer, *extra: str) -> list[str]:
    return [
        *SMALL,
        'llm.model="fake-model"',
        f'llm.base_url="{srv.base_url}"',
        "llm.max_retries=1",
        "llm.timeout_s=5",
        *ALL_LLM,
        *extra,
    ]


def run(srv: FakeOpenAIServer, out: Path, *extra: str, replay: Path | None = None) -> tokenomy.Run:
    sc = load_scenario("baseline", llm_sets(srv, *extra))
    return tokenomy.open_run(Runner(sc).run(out, replay_from=replay))


def llm_rows(r: tokenomy.Run) -> pd.DataFrame:
    return r.decisions[r.decisions["policy"] == "llm"]


def assert_conserved(r: tokenomy.Run) -> None:
    m = r.metrics
    supply = m["money_supply_cents"].to_numpy()
    np.testing.assert_array_equal(supply[1:], supply[:-1] + (m["issued_cents"] - m["destroyed_cents"]).to_numpy()[1:])
    assert int(r.world(int(m["round"].iloc[-1])).ledger.money_supply) == int(supply[-1])
    assert (m["money_without_counterpart_cents"] == 0).all() and (m["sfc_residual_cents"] == 0).all()
    assert r.manifest["status"] == "finished"
