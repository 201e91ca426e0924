"""What a validation check is: a named target from the literature, measured per seed.

Every check of ``tokenomy validate`` (exact, accounting, stylized fact) is a :class:`Check`: its
name, the target as a :class:`Target`, where the target comes from, and the value measured in each
seed. A check passes on the mean over seeds (the issue's rule: one lucky seed proves nothing, and
every seed is printed). Exact checks have one "seed" (they are deterministic or use their own
fixed draws).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Check", "Kind", "Target", "above", "below", "between", "check", "equals"]

Kind = Literal["exact", "accounting", "stylized", "automation"]


@dataclass(frozen=True)
class Target:
    """An interval ``[lo, hi]`` (either end open as ``None``) the mean over seeds must fall in."""

    lo: float | None = None
    hi: float | None = None
    text: str = ""

    def holds(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)

    def __str__(self) -> str:
        if self.text:
            return self.text
        if self.lo is not None and self.hi is not None:
            return f"{self.lo:g} to {self.hi:g}"
        return f"> {self.lo:g}" if self.lo is not None else f"< {self.hi:g}"


def between(lo: float, hi: float, text: str = "") -> Target:
    return Target(lo, hi, text)


def above(lo: float, text: str = "") -> Target:
    return Target(lo, None, text)


def below(hi: float, text: str = "") -> Target:
    return Target(None, hi, text)


def equals(value: float, tol: float, text: str = "") -> Target:
    return Target(value - tol, value + tol, text or f"{value:g} +- {tol:g}")


@dataclass(frozen=True)
class Check:
    """One row of the validation table."""

    name: str
    target: Target
    source: str
    per_seed: tuple[float | None, ...]
    kind: Kind = "stylized"
    note: str = ""  # how it was measured, or why it could not be
    deviation: str | None = field(default=None)  # the committed reason, when listed as a deviation

    @property
    def measured(self) -> float | None:
        """The mean over the seeds that measured it (None when none did)."""
        vals = [v for v in self.per_seed if v is not None and math.isfinite(v)]
        return sum(vals) / len(vals) if vals else None

    @property
    def range(self) -> tuple[float, float] | None:
        vals = [v for v in self.per_seed if v is not None and math.isfinite(v)]
        return (min(vals), max(vals)) if vals else None

    @property
    def passed(self) -> bool:
        """The mean over seeds is in range, and every seed measured it: a seed that could not
        (too few bankruptcies, a constant series) fails the check rather than drop out of the mean
        (a mean over the one seed of five that measured it passed as the mean over seeds)."""
        every = all(v is not None and math.isfinite(v) for v in self.per_seed)
        return every and self.target.holds(self.measured)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "expected": str(self.target),
            "lo": self.target.lo,
            "hi": self.target.hi,
            "source": self.source,
            "measured": self.measured,
            "range": list(self.range) if self.range else None,
            "per_seed": list(self.per_seed),
            "passed": self.passed,
            "deviation": self.deviation,
            "note": self.note,
        }


def check(
    name: str, target: Target, source: str, per_seed: Sequence[float | None], *, kind: Kind = "stylized", note: str = ""
) -> Check:
    return Check(name, target, source, tuple(None if v is None else float(v) for v in per_seed), kind, note)
