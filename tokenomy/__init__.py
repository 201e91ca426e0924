"""tokenomy: a multi-agent LLM economy sandbox.

Quick use::

    import tokenomy
    sc = tokenomy.load_scenario("automation_shock", ["households=2000"])
    path = tokenomy.Runner(sc).run("runs/shock")
    run = tokenomy.open_run(path)
    run.metrics[["round", "gdp", "labour_share"]]

The heavy parts (the engine, pandas, LangGraph) are imported on first use, so the command line
starts quickly; the role registry is imported here because every scenario's ``[roles.*]``
sections come from it.
"""

from typing import TYPE_CHECKING, Any

from tokenomy import registry
from tokenomy.scenario import Scenario, ScenarioError, bundled_scenarios, load_scenario

if TYPE_CHECKING:
    from tokenomy.runner import Runner, resume
    from tokenomy.simulation import Simulation
    from tokenomy.store import Run, open_run

__all__ = [
    "Run",
    "Runner",
    "Scenario",
    "ScenarioError",
    "Simulation",
    "bundled_scenarios",
    "load_scenario",
    "open_run",
    "registry",
    "resume",
]
__version__ = "0.1.0"

_LAZY = {
    "Runner": "tokenomy.runner",
    "resume": "tokenomy.runner",
    "Simulation": "tokenomy.simulation",
    "Run": "tokenomy.store",
    "open_run": "tokenomy.store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tokenomy' has no attribute {name!r}")
