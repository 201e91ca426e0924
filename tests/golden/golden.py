"""Golden runs: content hashes of a run's tables, recorded before the architecture refactor.

The refactor of issue "open the house" must change no number. ``hashes.json`` holds, per run and
per table, a SHA-256 of every column's contents (pandas' row hashes, in row order) and the row
count; wall-clock columns (``latency_ms``, ``llm_latency_*``) are left out because they differ
between any two runs. ``test_golden.py`` re-runs the same recipes and compares.

    python tests/golden/golden.py --write    # re-record (only when numbers change on purpose)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

import tokenomy
from tokenomy.scenario import load_scenario
from tokenomy.testing.fake_openai import FakeOpenAIServer

HERE = Path(__file__).parent
HASHES = HERE / "hashes.json"
TABLES = ("metrics", "payments", "trades", "decisions")
RULE_SETS = ["households=1000", "rounds=60", "seed=1"]
# Written out rather than taken from tests/llm/llm_helpers.py: a golden recipe must not move when
# another test's helper does.
LLM_SETS = [
    "households=40",
    "firms=3",
    "banks=1",
    "rounds=4",
    "seed=1",
    "record.household_decisions=5",
    'llm.model="fake-model"',
    "llm.max_retries=1",
    "llm.timeout_s=5",
    "roles.household.policy=llm",
    "roles.household.llm_share=0.25",
    "roles.firm.policy=llm",
    "roles.bank.policy=llm",
    "roles.network.policy=llm",
    "roles.regulator.policy=llm",
]
GOLDEN_KEY = "sk-golden-0123456789abcdef"


def is_wall_clock(column: str) -> bool:
    return column == "latency_ms" or column.startswith("llm_latency_")


def table_hashes(frame: pd.DataFrame) -> dict[str, object]:
    """Row count and one SHA-256 per column (its values in row order; categoricals by value)."""
    out: dict[str, object] = {"rows": len(frame)}
    for col in frame.columns:
        if is_wall_clock(str(col)):
            continue
        values = pd.util.hash_pandas_object(frame[col], index=False).to_numpy(dtype=np.uint64)
        out[str(col)] = hashlib.sha256(values.tobytes()).hexdigest()
    return out


def run_hashes(run: tokenomy.Run) -> dict[str, dict[str, object]]:
    return {t: table_hashes(getattr(run, t)) for t in TABLES}


def _rule_run(name: str) -> Callable[[Path], tokenomy.Run]:
    def go(out: Path) -> tokenomy.Run:
        return tokenomy.open_run(tokenomy.Runner(load_scenario(name, RULE_SETS)).run(out))

    return go


def _llm_run(*extra: str) -> Callable[[Path], tokenomy.Run]:
    def go(out: Path) -> tokenomy.Run:
        import os

        old = os.environ.get("OPENAI_API_KEY")
        os.environ["OPENAI_API_KEY"] = GOLDEN_KEY
        try:
            with FakeOpenAIServer(model="fake-model", retry_after_ms=1) as srv:
                sc = load_scenario("baseline", [*LLM_SETS, f'llm.base_url="{srv.base_url}"', *extra])
                with tokenomy.Runner(sc) as sim:
                    return tokenomy.open_run(sim.run(out))
        finally:
            if old is None:
                os.environ.pop("OPENAI_API_KEY", None)
            else:
                os.environ["OPENAI_API_KEY"] = old

    return go


RUNS: dict[str, Callable[[Path], tokenomy.Run]] = {
    "baseline": _rule_run("baseline"),
    "automation_shock": _rule_run("automation_shock"),
    "llm_fake_server": _llm_run(),
    "llm_archetypes": _llm_run("roles.household.archetypes=4", "roles.household.llm_share=1.0"),
}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="record hashes.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        got = {name: run_hashes(fn(Path(tmp) / name)) for name, fn in RUNS.items()}
    if args.write:
        HASHES.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"wrote {HASHES}")
        return 0
    want = json.loads(HASHES.read_text())
    bad = [f"{r}.{t}.{c}" for r in want for t in want[r] for c in want[r][t] if got[r][t].get(c) != want[r][t][c]]
    print("unchanged" if not bad else "changed: " + ", ".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
