"""Scenario changes mid-run: which fields may change between two rounds, and how a change acts.

A run paused after round T (``Runner.run(out, pause_at=T)``, then ``Runner.update``) and a fork
from the end of round T (``tokenomy fork``) both go on from round T+1 with a changed scenario. The
simulation reads most of the scenario every round (``Simulation.scenario``: the roles' rules,
production, the automation ramp, the rails' switching), so a change there acts in round T+1 as
it is. What a role *decides* from its section takes effect when its batch does
(``Batch.takes_effect``): the regulator's taxes, UBI and fee cap, and the central bank's fixed
rate, are decided in T+1 and in force from T+2; the card network's fee acts in T+1.

Some fields are copied into the world once, at round 0 (``tokenomy.initial.build_world``): those
that may still mean something later are set in the world when the change is made (``act``), so
they act from round T+1 too; the others are refused with one line saying why (:data:`FIXED`):
the population and the seed (the accounts and the random state are in the snapshot), the
opening state (``initial.*``, the rails' opening shares), who decides and how the model is asked
(``roles.*.policy``, the LLM client: its answers are cached against them), and the tables' shape.

The manifest keeps the scenario in force now and, separately, ``changes``: one record per change,
``{"round": T+1, "set": {field: new}, "was": {field: old}}``, so the scenario of any earlier round
can be rebuilt (:func:`scenario_at`) and a resumed run re-applies what the world holds
(:func:`reapply`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tokenomy.initial import check_scale, phi_at
from tokenomy.scenario import CentralBank, Regulator, Scenario, ScenarioError, apply_overrides, dotted
from tokenomy.world import World

__all__ = ["FIXED", "Change", "act", "changed", "parse_sets", "reapply", "scenario_at"]

_SIZE = "it fixes the population size (the world's accounts are laid out at round 0); start a new run"
_OPENING = "it sets the round-0 world only, so it would not act later; start a new run"
_WHO = "who decides, and how the model is asked, are set when a run starts (its answers are cached against them)"
FIXED: dict[str, str] = {
    "households": _SIZE,
    "firms": _SIZE,
    "banks": _SIZE,
    "seed": "the random state goes on from the snapshot (it is part of the world), so a new seed would not act;"
    " start a new run with --seed",
    "rounds": "a fork runs to its parent's last round, or --rounds N more (rounds= for Runner.run)",
    "initial": _OPENING,
    "automation.capital_price0": _OPENING,
    "rails.card_adoption": _OPENING,
    "rails.chain_adoption": _OPENING,
    "llm": _WHO,
    "roles.*.policy": _WHO,
    "roles.*.llm_share": _WHO,
    "roles.*.prompt": _WHO,
    "roles.*.archetypes": _WHO,
    "record.payments": "the tables' shape is fixed for a run",
    "record.household_decisions": "the tables' shape is fixed for a run",
}
"""Fields (or sections) that cannot change mid-run, and why; ``*`` stands for any role."""


def _set(attr: str, value: Callable[[Scenario], Any]) -> Callable[[World, Scenario], None]:
    def put(world: World, scenario: Scenario) -> None:
        setattr(world, attr, value(scenario))

    return put


def _phi(world: World, scenario: Scenario) -> None:
    world.phi = phi_at(scenario, world.round)  # the share of the round about to run, on the new schedule


_WORLD: dict[str, Callable[[World, Scenario], None]] = {
    "rails.chain_fee": _set("chain_fee", lambda s: s.rails.chain_fee),
    "rails.bank_transfer_fee": _set("bank_transfer_fee", lambda s: s.rails.bank_transfer_fee),
    "rails.chain_enabled": _set("chain_enabled", lambda s: s.rails.chain_enabled),
    "roles.regulator.ubi_financing": _set(
        "ubi_money_financed", lambda s: s.roles.get("regulator", Regulator).ubi_financing == "money"
    ),
    "roles.central_bank.inflation_target": _set(
        "inflation_target", lambda s: s.roles.get("central_bank", CentralBank).inflation_target
    ),
    **{f"automation.{k}": _phi for k in ("schedule", "phi0", "phi_end", "start", "ramp_rounds", "rate")},
}
"""Fields the world holds a copy of from round 0 (``initial.build_world``): a change sets the copy."""



def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` items as ``{field: value}`` (values parsed as TOML, as ``tokenomy run`` does)."""
    out: dict[str, Any] = {}
    for item in items:
        node: Any = apply_overrides({}, [item])  # FIELD=VALUE, or an error saying so
        key = ".".join(p for p in item.split("=", 1)[0].strip().split(".") if p)
        for p in key.split("."):
            node = node[p]
        out[key] = node  # a table value stays one value: "rails={}" is refused as not a single field
    return out


def _why_fixed(key: str) -> str | None:
    parts = key.split(".")
    for pattern, why in FIXED.items():
        p = pattern.split(".")
        if len(parts) >= len(p) and all(a == b or a == "*" for a, b in zip(p, parts, strict=False)):
            return why
    return None


@dataclass(frozen=True)
class Change:
    """A validated change: the scenario after it, and each field's new and old value (JSON, as dumped)."""

    scenario: Scenario
    set: dict[str, Any]
    was: dict[str, Any]

    @property
    def effective(self) -> dict[str, Any]:
        """The fields whose value changed (a field set to what it was is no change)."""
        return {k: v for k, v in self.set.items() if v != self.was[k]}

    def record(self, round_no: int) -> dict[str, Any]:
        """The manifest's record of this change, in force from ``round_no``."""
        done = self.effective
        return {"round": round_no, "set": done, "was": {k: self.was[k] for k in done}}


def changed(scenario: Scenario, updates: Mapping[str, Any]) -> Change:
    """``scenario`` with ``updates`` (``{"roles.regulator.ubi": 500}``), validated as a scenario is.

    Raises:
        ScenarioError: one line naming the first field that is unknown, may not change mid-run (and
            why), or fails validation.
    """
    before = dotted(scenario.model_dump(mode="json"))
    data = scenario.model_dump(mode="json")
    for key, value in updates.items():
        if key not in before:
            inside = any(k.startswith(key + ".") for k in before)
            raise ScenarioError(
                f"{key}: not a single field; name one, e.g. {next(k for k in before if k.startswith(key + '.'))}"
                if inside
                else f"{key}: no such scenario field (check its spelling and section)"
            )
        if (why := _why_fixed(key)) is not None:
            raise ScenarioError(f"{key} cannot change mid-run: {why}")
        node = data
        *path, leaf = key.split(".")
        for p in path:
            node = node[p]
        node[leaf] = value
    try:
        after = Scenario.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e["loc"])
        given = f" (got {e['input']!r:.60})" if not isinstance(e.get("input"), dict) else ""
        raise ScenarioError(f"{where}: {e['msg']}{given}") from None
    cb = after.roles.get("central_bank", CentralBank)
    if "roles.central_bank.policy_rate" in updates and cb.rule != "fixed":
        raise ScenarioError(
            f"roles.central_bank.policy_rate: under rule = {cb.rule!r} it is only the rate at round 0, so it would"
            ' not act mid-run; set roles.central_bank.rule = "fixed" with it'
        )
    check_scale(after)  # money a new UBI or productivity would make too large for int64 cents
    now = dotted(after.model_dump(mode="json"))
    return Change(after, {k: now[k] for k in updates}, {k: before[k] for k in updates})


def act(world: World, scenario: Scenario, keys: Iterable[str]) -> None:
    """Set what the world holds of the changed ``keys`` (from round 0) to the new ``scenario``'s values."""
    for key in keys:
        if (put := _WORLD.get(key)) is not None:
            put(world, scenario)


def scenario_at(current: Scenario, changes: Sequence[Mapping[str, Any]], round_no: int) -> Scenario:
    """The scenario in force in ``round_no``: ``current`` with the changes from later rounds undone."""
    later = [c for c in changes if int(c["round"]) > round_no]
    if not later:
        return current
    data = current.model_dump(mode="json")
    for c in reversed(later):
        for key, value in c.get("was", {}).items():
            node = data
            *path, leaf = key.split(".")
            for p in path:
                node = node[p]
            node[leaf] = value
    return Scenario.model_validate(data)


def reapply(world: World, scenario: Scenario, changes: Sequence[Mapping[str, Any]], round_no: int) -> None:
    """Set in ``world`` (a snapshot taken before round ``round_no``) what the changes in force from
    ``round_no`` put there when they were made: a resumed or forked run starts from that snapshot."""
    for c in changes:
        if int(c["round"]) == round_no:
            act(world, scenario, c["set"])
