"""``tokenomy sweep --executor ray``: one Ray task per run gives the local executor's table.

One local Ray cluster (2 CPUs) serves the whole module: starting one takes several seconds. The
module is one xdist group (``--dist loadfile`` keeps a file on one worker anyway), so no two
workers start clusters side by side on the same cores.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tokenomy.sweep import open_sweep, run_sweep

ray: Any = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

SCRIPT = Path(sys.executable).parent / "tokenomy"
SETS = ["households=60", "firms=4", "banks=2", "record.flush_every=2", "record.household_decisions=5"]
ROUNDS = 8
GRID = {"roles.regulator.ubi": [0, 500]}
SEEDS = 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster for the module; its address."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_sweep("baseline", GRID, SEEDS, tmp_path_factory.mktemp("local") / "s", rounds=ROUNDS, sets=SETS, jobs=1)


def _table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path / "sweep.parquet")


def _stats(path: Path) -> dict[str, tuple[int, int]]:
    return {str(f.relative_to(path)): (f.stat().st_ino, f.stat().st_mtime_ns) for f in path.rglob("*") if f.is_file()}


def test_ray_and_local_executors_give_equal_tables(cluster: str, local: Path, tmp_path: Path) -> None:
    out = run_sweep("baseline", GRID, SEEDS, tmp_path / "ray", rounds=ROUNDS, sets=SETS, executor="ray")
    m = json.loads((out / "sweep.json").read_text())
    assert m["executor"] == "ray" and m["versions"]["ray"] == ray.__version__ and m["status"] == "finished"
    assert m["jobs"] == 2  # the cluster's CPUs
    pd.testing.assert_frame_equal(_table(out), _table(local), check_exact=True)
    assert ray.is_initialized()  # a cluster the sweep did not start is left running
    # run again after losing one run: only that one runs, on Ray, and the table is the same
    shutil.rmtree(out / "runs" / "c001-s1")
    kept = {n: _stats(out / "runs" / n) for n in ("c000-s1", "c000-s2", "c001-s2")}
    run_sweep("baseline", GRID, SEEDS, out, rounds=ROUNDS, sets=SETS, executor="ray")
    assert {n: _stats(out / "runs" / n) for n in kept} == kept
    pd.testing.assert_frame_equal(_table(out), _table(local), check_exact=True)


def test_the_command_connects_to_a_cluster_by_address(cluster: str, local: Path, tmp_path: Path) -> None:
    out = tmp_path / "ray"
    args = ["sweep", "baseline", "--grid", "roles.regulator.ubi=0,500", "--seeds", str(SEEDS), "--rounds", str(ROUNDS)]
    args += [a for s in SETS for a in ("--set", s)]
    args += ["--executor", "ray", "--address", cluster, "--out", str(out), "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "PYTHONPATH")}
    done = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "(ray, 2 at once)" in done.stdout
    assert json.loads((out / "sweep.json").read_text())["address"] == cluster
    pd.testing.assert_frame_equal(_table(out), _table(local), check_exact=True)
    assert open_sweep(out).status == "finished"
    assert ray.cluster_resources().get("CPU") == 2  # the command disconnected; the cluster is still up
