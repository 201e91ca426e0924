"""Scale: household-rounds per second and peak memory, rule-based, 100 firms, 5 banks.

Each size runs in a fresh single-threaded subprocess (BLAS pinned to one thread, so "one core"
means one core), first through the real path (LangGraph round graph + recording to a temporary run
directory), then the same rounds as a bare phase loop, so the figures say where the time goes.

    python benchmarks/scale.py                      # 1,000 / 10,000 / 100,000 households x 100 rounds
    python benchmarks/scale.py --sizes 1000 10000 --rounds 50

Targets (issue #2): 10,000 x 100 under 20 s, 100,000 x 100 under 3 minutes, on one core of a
2-core machine. The 100,000 run records payments per role pair and snapshots every 10 rounds
(``record.payments = "role"``, ``record.snapshot_every = 10``): per-agent payment edges at that size
are ~1M dividend rows a round, which is a data-volume choice rather than engine speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time, tempfile
import tokenomy, tokenomy.rounds  # imports outside the timed region
from tokenomy.runner import Runner
from tokenomy.simulation import Simulation
n, rounds, extra = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
sets = [f"households={n}", "firms=100", "banks=5", f"rounds={rounds}", *extra]
sc = tokenomy.load_scenario("baseline", sets)
t0 = time.perf_counter()
sim = Runner(sc)
t_build = time.perf_counter() - t0
with tempfile.TemporaryDirectory() as d:
    t0 = time.perf_counter()
    sim.run(d + "/run")
    t_full = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in __import__("pathlib").Path(d).rglob("*") if p.is_file())
bare = Simulation(sc)
t0 = time.perf_counter()
for _ in range(rounds):
    bare.step()
t_bare = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "rounds": rounds, "build_s": t_build, "full_s": t_full, "bare_s": t_bare,
                  "peak_mb": peak, "run_dir_mb": size / 2**20}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--rounds", type=int, default=100)
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print(
        f"{'households':>10} {'rounds':>6} {'full run s':>10} {'hh-rounds/s':>12} {'engine s':>9} "
        f"{'record s':>9} {'peak MB':>8} {'run dir MB':>10}"
    )
    with tempfile.TemporaryDirectory():
        for n in args.sizes:
            extra = ["record.snapshot_every=10", 'record.payments="role"'] if n >= 100_000 else []
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(n), str(args.rounds), json.dumps(extra)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if out.returncode != 0:
                print(f"{n:>10} failed:\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            record = max(r["full_s"] - r["bare_s"], 0.0)
            print(
                f"{n:>10,} {r['rounds']:>6} {r['full_s']:>10.1f} {n * r['rounds'] / r['full_s']:>12,.0f} "
                f"{r['bare_s']:>9.1f} {record:>9.1f} {r['peak_mb']:>8.0f} {r['run_dir_mb']:>10.1f}"
            )


if __name__ == "__main__":
    main()
