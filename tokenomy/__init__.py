"""tokenomy: a multi-agent LLM economy sandbox.

Quick use::

    import tokenomy
    sc = tokenomy.load_scenario("automation_shock", ["households=2000"])
    path = tokenomy.Simulation(sc).run("runs/shock")
    run = tokenomy.open_run(path)
    run.metrics[["round", "gdp", "labour_share"]]
"""

from tokenomy.scenario import Scenario, ScenarioError, bundled_scenarios, load_scenario
from tokenomy.simulation import Simulation
from tokenomy.store import Run, open_run

__all__ = ["Run", "Scenario", "ScenarioError", "Simulation", "bundled_scenarios", "load_scenario", "open_run"]
__version__ = "0.1.0"
