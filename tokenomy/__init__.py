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
    from tokenomy import compare, report
    from tokenomy.compare import Comparison
    from tokenomy.report import write_report
    from tokenomy.runner import Runner, fork, resume
    from tokenomy.simulation import Simulation
    from tokenomy.store import Run, open_run
    from tokenomy.sweep import Sweep, open_sweep, run_sweep

__all__ = [
    "Comparison",
    "Run",
    "Runner",
    "Scenario",
    "ScenarioError",
    "Simulation",
    "Sweep",
    "bundled_scenarios",
    "compare",
    "fork",
    "load_scenario",
    "open_run",
    "open_sweep",
    "registry",
    "report",
    "resume",
    "run_sweep",
    "write_report",
]
__version__ = "0.1.0"

_LAZY = {
    "Comparison": "tokenomy.compare",
    "compare": "tokenomy.compare",  # the module: tokenomy.compare.compare(...)
    "Runner": "tokenomy.runner",
    "resume": "tokenomy.runner",
    "fork": "tokenomy.runner",  # the function (the fork's run directory is tokenomy.forks)
    "Simulation": "tokenomy.simulation",
    "Run": "tokenomy.store",
    "open_run": "tokenomy.store",
    "Sweep": "tokenomy.sweep",
    "run_sweep": "tokenomy.sweep",
    "open_sweep": "tokenomy.sweep",
    "report": "tokenomy.report",  # the module: tokenomy.report.figures.output_vs_potential(metrics), ...
    "write_report": "tokenomy.report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        return module if module.__name__ == f"tokenomy.{name}" else getattr(module, name)  # a submodule: itself
    raise AttributeError(f"module 'tokenomy' has no attribute {name!r}")
