"""The README's paradox table: the bundled control and the two automation scenarios, over seeds.

Each scenario runs at its bundled size and length through the real path (graph and recording to
a temporary directory), one process per run. For each it prints the mean of the first and of the
last 10 rounds (mean over seeds, range of the last over seeds) of the labour share, consumption over potential output,
unemployment and utilisation, and the firms that exited over the run; then the margins through
which demand moves: the real wage of those employed, the capital stock and the wage bill's share
of household income, last 10 rounds against the first.

    python benchmarks/paradox.py                   # baseline, automation_shock, full_automation; seeds 1-3
    python benchmarks/paradox.py --seeds 1 2 3 4 5 --set roles.regulator.ubi=500

Economic claims are measured over several seeds (the brief), not one run; nothing here is timed.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor

import numpy as np

SCENARIOS = ("baseline", "automation_shock", "full_automation")
COLUMNS = ("labour_share", "c_over_potential", "unemployment_rate", "utilisation")


Run = tuple[dict[str, tuple[float, float]], int]


def one(name: str, seed: int, sets: list[str]) -> Run:
    """One run through the real path: (first 10 rounds, last 10 rounds) of each column, and the exits."""
    import tempfile

    import tokenomy
    from tokenomy.runner import Runner

    with tempfile.TemporaryDirectory() as d:
        m = tokenomy.open_run(Runner(tokenomy.load_scenario(name, sets, seed=seed)).run(f"{d}/run")).metrics
    m["c_over_potential"] = m["consumption"] / m["potential_output"]
    m["real_wage"] = m["wage_mean"] / m["price_index"]
    income = m[["income_wages", "income_dividends", "income_interest", "income_ubi", "income_benefits"]].sum(axis=1)
    m["wage_share_of_income"] = m["income_wages"] / income
    cols = (*COLUMNS, "real_wage", "capital_stock", "wage_share_of_income")
    first_last = {k: (float(m[k].iloc[:10].mean()), float(m[k].iloc[-10:].mean())) for k in cols}
    return first_last, int(m["bankruptcies"].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a --set override for every run")
    args = ap.parse_args()
    jobs = [(n, s) for n in args.scenarios for s in args.seeds]
    with ProcessPoolExecutor() as pool:
        names, seeds = [n for n, _ in jobs], [s for _, s in jobs]
        results = dict(zip(jobs, pool.map(one, names, seeds, [args.sets] * len(jobs)), strict=True))
    print(f"seeds {args.seeds}; first 10 rounds -> last 10 rounds, mean over seeds [range of the last]")
    print("| scenario | labour share | consumption / potential output | unemployment | utilisation | exits |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in args.scenarios:
        rs = [results[(n, s)][0] for s in args.seeds]
        cells = []
        for k in COLUMNS:
            first = np.mean([r[k][0] for r in rs])
            last = [r[k][1] for r in rs]
            pct = k == "unemployment_rate"
            f = (lambda x: f"{100 * x:.1f}%") if pct else (lambda x: f"{x:.3f}")
            cells.append(f"{f(first)} -> {f(np.mean(last))} [{f(min(last))}, {f(max(last))}]")
        ex = [results[(n, s)][1] for s in args.seeds]
        cells.append(f"{np.mean(ex):.0f} [{min(ex)}, {max(ex)}]")
        print(f"| {n} | " + " | ".join(cells) + " |")
    print("\nmargins, last 10 rounds over first 10 (mean over seeds):")
    print("| scenario | real wage | capital stock | wages / household income |")
    print("| --- | --- | --- | --- |")
    for n in args.scenarios:
        rs = [results[(n, s)][0] for s in args.seeds]
        ratio = {k: np.mean([r[k][1] / max(r[k][0], 1e-12) for r in rs]) for k in ("real_wage", "capital_stock")}
        share = [r["wage_share_of_income"] for r in rs]
        w0, w1 = np.mean([x[0] for x in share]), np.mean([x[1] for x in share])
        print(f"| {n} | x{ratio['real_wage']:.2f} | x{ratio['capital_stock']:.2f} | {w0:.2f} -> {w1:.2f} |")


if __name__ == "__main__":
    main()
