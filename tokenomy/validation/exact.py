"""Exact checks: closed-form results the project's own modules must reproduce.

Two families, each run through the code the simulation itself uses, so a pass says something
about that code rather than about a re-implementation:

* **Korinek & Suh (2024)**, static task-based production, computed with
  :mod:`tokenomy.market.production`: the wage pinned at ``A`` once capital stops being scarce, the
  wage bill's interior peak and collapse, the baseline labour share, and Euler's theorem.
* **Econophysics exchange models**, run on :class:`tokenomy.market.ledger.Ledger`: random pairwise
  exchange of integer cents settles into the known stationary distributions (Dragulescu &
  Yakovenko 2000; Chakraborti & Chakrabarti 2000). Every move is a :meth:`Ledger.transfer` (one
  all-or-nothing batch per step, disjoint pairs) and rounds are closed with
  :meth:`Ledger.close_round`, so the run also proves the ledger conserves money under millions of
  transfers, and a model that creates, destroys or overdraws money cannot pass silently.

Everything is deterministic given ``seed``: the Korinek & Suh checks use no randomness and each
exchange model draws from its own child of ``SeedSequence(seed)``, so one model's result does not
depend on which others ran before it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tokenomy.market import production
from tokenomy.market.ledger import Ledger
from tokenomy.metrics import gini
from tokenomy.validation.checks import Check, below, between, check, equals

__all__ = [
    "ExchangeRun",
    "Sizes",
    "Split",
    "exact_checks",
    "exchange_checks",
    "gamma_gini",
    "geometric_gini",
    "korinek_suh_checks",
    "random_reshuffle",
    "run_exchange",
    "saving_propensity",
    "sizes",
    "unit_transfer",
]

_Cents = NDArray[np.int64]

Split = Callable[[np.random.Generator, _Cents, _Cents], _Cents]
"""An exchange rule: given the balances ``(a, b)`` of each pair, the first member's new balance.

The second member gets the rest (``a + b - new``), so a rule cannot change the pair's total; a
rule returning a value outside ``[0, a + b]`` asks one member to pay more than it holds, and the
ledger refuses the whole batch."""

_KS = "Korinek & Suh (2024)"
_DY = "Dragulescu & Yakovenko (2000)"
_CC = "Chakraborti & Chakrabarti (2000); gamma fit: Patriarca et al. (2004)"


# -- closed forms -------------------------------------------------------------------------------
def geometric_gini(m: float) -> float:
    """Gini of the geometric distribution on ``{0, 1, 2, ...}`` with mean ``m``: ``(1+m)/(1+2m)``.

    With ``P(k) = (1-q) q^k`` and ``q = m/(1+m)``, two independent draws differ by ``d >= 1`` with
    probability ``2 (1-q) q^d / (1+q)``, so ``E|X-Y| = 2q / ((1-q)(1+q))`` and
    ``G = E|X-Y| / (2m) = 1/(1+q) = (1+m)/(1+2m)`` (``= 1/(2-p)`` with success probability
    ``p = 1-q``). Checks: ``m -> 0`` gives 1 (almost everyone holds nothing), ``m -> inf`` gives
    1/2, the exponential's Gini. (``m/(1+2m)`` is the same law shifted onto ``{1, 2, ...}``,
    which is not what unit transfers with a floor at zero produce.)
    """
    return (1.0 + m) / (1.0 + 2.0 * m)


def gamma_gini(shape: float) -> float:
    """Gini of a gamma distribution: ``Gamma(n + 1/2) / (sqrt(pi) Gamma(n + 1))`` (1/2 at ``n = 1``)."""
    return math.exp(math.lgamma(shape + 0.5) - math.lgamma(shape + 1.0)) / math.sqrt(math.pi)


def _saving_shape(lam: float) -> float:
    """Patriarca et al.'s gamma shape ``n = 1 + 3 lam / (1 - lam)`` for saving propensity ``lam``.

    It is exact in its first two moments: with ``x' = lam x + eps (1-lam)(x+y)``, independent
    ``x, y`` of mean 1 and ``eps ~ U(0,1)``, the stationary variance solves to
    ``(1-lam)/(1+2lam) = 1/n``. The Gini (a whole-distribution statistic) is an approximation:
    its simulated value here is within 5e-4 of the gamma's for lam in 0.25..0.9 (30 seeds).
    """
    return 1.0 + 3.0 * lam / (1.0 - lam)


# -- exchange rules -----------------------------------------------------------------------------
def random_reshuffle(rng: np.random.Generator, a: _Cents, b: _Cents) -> _Cents:
    """Dragulescu & Yakovenko's random reshuffling: the pair's pooled cents split uniformly.

    The first member's share is uniform on ``{0, ..., a+b}``, an integer draw, so the split is
    exact. The kernel is symmetric, so the stationary law is uniform over all ways of dividing the
    money supply: geometric in cents (Boltzmann-Gibbs), Gini ``(1+M)/(1+2M) -> 1/2`` at a mean of
    ``M`` cents.
    """
    return rng.integers(0, a + b + 1)


def unit_transfer(unit: int) -> Split:
    """Dragulescu & Yakovenko's constant-amount exchange: ``unit`` cents move one way per pair.

    A fair coin picks the payer; the transfer happens only if the payer holds a unit (no debt).
    Each move and its reverse are equally likely, so the stationary law is uniform over
    allocations of whole units: geometric with mean ``m`` units, Gini ``(1+m)/(1+2m)``
    (:func:`geometric_gini`).
    """
    if unit <= 0:
        raise ValueError(f"unit must be a positive number of cents, got {unit}")

    def split(rng: np.random.Generator, a: _Cents, b: _Cents) -> _Cents:
        first_gains = rng.random(a.size) < 0.5
        gain = first_gains & (b >= unit)
        lose = ~first_gains & (a >= unit)
        out: _Cents = a + unit * gain.astype(np.int64) - unit * lose.astype(np.int64)
        return out

    return split


def saving_propensity(lam: float) -> Split:
    """Chakraborti & Chakrabarti: each keeps ``floor(lam * balance)``, the pooled rest splits uniformly.

    Flooring the saved part and drawing the split as an integer keeps the pair's total exact;
    ``lam = 0`` is :func:`random_reshuffle`.
    """
    if not 0.0 <= lam < 1.0:
        raise ValueError(f"saving propensity must be in [0, 1), got {lam}")

    def split(rng: np.random.Generator, a: _Cents, b: _Cents) -> _Cents:
        keep_a = np.floor(lam * a).astype(np.int64)
        keep_b = np.floor(lam * b).astype(np.int64)
        out: _Cents = keep_a + rng.integers(0, a + b - keep_a - keep_b + 1)
        return out

    return split


# -- the engine ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExchangeRun:
    """What :func:`run_exchange` measured and how much ledger traffic it took."""

    gini: tuple[float, ...]  # one snapshot every ``sample_every`` steps after the burn-in
    batches: int  # Ledger.transfer calls (at most one per step)
    transfers: int  # non-zero payments posted
    rounds_closed: int  # Ledger.close_round calls, each a conservation check

    @property
    def mean_gini(self) -> float:
        return float(np.mean(self.gini)) if self.gini else math.nan


def run_exchange(
    ledger: Ledger,
    split: Split,
    rng: np.random.Generator,
    *,
    steps: int,
    burn_in: int,
    sample_every: int = 10,
    close_every: int = 50,
    kind: str = "exchange",
) -> ExchangeRun:
    """Run pairwise exchange on ``ledger`` for ``steps`` steps; Gini snapshots after ``burn_in``.

    Each step shuffles the accounts into disjoint pairs (a random permutation split in halves; with
    an odd count one account sits the step out), asks ``split`` for the first members' new
    balances and posts the differences as one batch, so each account pays at most once per step
    and the ledger's all-or-nothing funds check applies to the whole step. ``close_round`` runs
    every ``close_every`` steps and after the last one: money created or destroyed anywhere
    raises :class:`~tokenomy.market.ledger.ConservationError`.
    """
    if steps < 1 or not 0 <= burn_in < steps or sample_every < 1 or close_every < 1:
        raise ValueError("need steps >= 1, 0 <= burn_in < steps, sample_every >= 1, close_every >= 1")
    n = ledger.balance.size
    half = n // 2
    snapshots: list[float] = []
    batches = transfers = rounds = 0
    for step in range(1, steps + 1):
        order = rng.permutation(n)
        first, second = order[:half], order[half : 2 * half]
        a, b = ledger.balance[first], ledger.balance[second]
        delta = np.asarray(split(rng, a, b), dtype=np.int64) - a  # > 0: second pays first
        moves = delta != 0
        if moves.any():
            gains = delta[moves] > 0
            p, q = first[moves], second[moves]
            ledger.transfer(kind, np.where(gains, q, p), np.where(gains, p, q), np.abs(delta[moves]))
            batches += 1
            transfers += int(moves.sum())
        if step % close_every == 0 or step == steps:
            rounds += 1
            ledger.close_round(rounds)
        if step > burn_in and (step - burn_in) % sample_every == 0:
            snapshots.append(gini(ledger.balance))
    return ExchangeRun(tuple(snapshots), batches, transfers, rounds)


# -- the checks ---------------------------------------------------------------------------------
def korinek_suh_checks() -> list[Check]:
    """Korinek & Suh's static results, evaluated by :mod:`tokenomy.market.production`."""
    out: list[Check] = []

    # K = L = 1, sigma = 0.5: at phi >= K/(K+L) = 0.5 capital covers the automatable tasks with
    # labour to spare, the economy is in the linear region and the wage is A -- exactly.
    A = 0.5
    high = np.linspace(0.5, 1.0, 51)
    _, w = production.marginal_products(1.0, 1.0, high, A, 0.5)
    out.append(
        check(
            "K&S: wage = A once phi >= 0.5 (max |w - A|)",
            equals(0.0, 1e-12),
            f"{_KS}, static model, K = L = 1",
            [float(np.max(np.abs(np.asarray(w) - A)))],
            kind="exact",
            note="sigma = 0.5, A = 0.5, 51 phi in [0.5, 1]; the linear region makes it exactly A",
        )
    )

    # K = 10, L = 1, sigma = 0.2: automation first raises the wage bill, then collapses it.
    phi = np.linspace(0.5, 0.999, 4991)
    _, w = production.marginal_products(10.0, 1.0, phi, A, 0.2)
    bill = np.asarray(w) * 1.0  # L = 1
    peak = int(np.argmax(bill))
    grid = "K = 10, L = 1, sigma = 0.2, A = 0.5; phi step 1e-4 over [0.5, 0.999]"
    out.append(
        check(
            "K&S: phi at which the wage bill peaks",
            equals(0.82, 0.02),
            f"{_KS}, static model, K = 10",
            [float(phi[peak])],
            kind="exact",
            note=grid + ("" if 0 < peak < phi.size - 1 else "; the peak is at an endpoint, not interior"),
        )
    )
    out.append(
        check(
            "K&S: wage bill change, peak to phi = 0.999 (%)",
            between(-90.0, -80.0, "about -85% (-90 to -80)"),
            f"{_KS}, static model, K = 10",
            [float(100.0 * (bill[-1] / bill[peak] - 1.0))],
            kind="exact",
            note=grid,
        )
    )

    # The project's starting point: K&S's baseline calibration.
    sigma, phi0, K0, L0 = 0.5, 0.608, 4.6, 1.0
    Y = float(production.output(K0, L0, phi0, A, sigma))
    R0, w0 = (float(np.asarray(x)) for x in production.marginal_products(K0, L0, phi0, A, sigma))
    out.append(
        check(
            "K&S: labour share at the baseline calibration",
            equals(0.657, 0.002),
            f"{_KS}, baseline calibration",
            [w0 * L0 / Y],
            kind="exact",
            note="sigma = 0.5, A = 0.5, phi0 = 0.608, K0 = 4.6, L = 1; w L / Y",
        )
    )

    # Constant returns to scale: factor payments exhaust output, in both regions.
    Ks, Ls, phis = np.meshgrid(np.geomspace(0.05, 50.0, 25), [0.5, 1.0, 3.0], np.linspace(0.01, 0.99, 25))
    worst, points, ces_points = 0.0, 0, 0
    for s in (0.1, 0.3, 0.5, 0.7, 0.9):
        for a_ in (0.5, 2.0):
            Yg = np.asarray(production.output(Ks, Ls, phis, a_, s))
            Rg, wg = (np.asarray(x) for x in production.marginal_products(Ks, Ls, phis, a_, s))
            worst = max(worst, float(np.max(np.abs(Rg * Ks + wg * Ls - Yg) / Yg)))
            points += Yg.size
            ces_points += int(np.count_nonzero(Ks * (1.0 - phis) > phis * Ls))
    worst = max(worst, abs(R0 * K0 + w0 * L0 - Y) / Y)
    out.append(
        check(
            "Euler: R K + w L = Y (max relative error)",
            below(1e-9, "< 1e-9"),
            "Euler's theorem (constant returns to scale)",
            [worst],
            kind="exact",
            note=f"{points} grid points ({ces_points} in the CES region) plus the baseline: K in [0.05, 50],"
            " L in {0.5, 1, 3}, phi in [0.01, 0.99], sigma in {0.1, ..., 0.9}, A in {0.5, 2}",
        )
    )
    return out


@dataclass(frozen=True)
class Sizes:
    """How big each exchange run is, and the Gini tolerance that size earns."""

    agents: int
    steps: int
    burn_in: int
    sample_every: int
    tol: float
    sd: float  # the largest seed-to-seed sd of a model's mean Gini at this size (30 seeds, measured)


def sizes(quick: bool = False) -> Sizes:
    """The full run, or the test suite's smaller one (still past relaxation).

    Relaxation is mean-field, so it does not grow with the number of agents: under 100 steps for
    every model but unit transfers at high ``m`` (see :func:`exchange_checks`), so a burn-in of
    150-200 steps is ample. The tolerance is at least five seed-to-seed standard deviations of
    the mean Gini at that size, which also covers the -G/N bias of the sample Gini and the
    gamma approximation for saving propensities (both below 5e-4 here).
    """
    if quick:
        return Sizes(agents=2_000, steps=300, burn_in=150, sample_every=10, tol=0.02, sd=0.0041)
    return Sizes(agents=10_000, steps=400, burn_in=200, sample_every=10, tol=0.01, sd=0.0013)


_UNIT = 100  # cents: unit transfers move one currency unit
_MEAN = 100 * _UNIT  # opening balance of the continuous-amount models: 100 units of 100 cents


def exchange_checks(seed: int = 0, quick: bool = False) -> list[Check]:
    """The exchange models' stationary Gini coefficients, every cent moved by the ledger."""
    size = sizes(quick)
    # (name, source, rule, opening cents, target, law, burn-in multiplier)
    models: list[tuple[str, str, Split, int, float, str, int]] = [
        ("DY: random reshuffling Gini", _DY, random_reshuffle, _MEAN, 0.5, "exponential (Boltzmann-Gibbs): 1/2", 1),
    ]
    for m in (1, 4):
        g = geometric_gini(m)
        # One unit moves at a time, so the chain relaxes by diffusion and takes longer the wider
        # the stationary law (variance m(1+m) units^2): at m = 4 the Gini still creeps up until
        # ~400 steps (measured), against < 100 for the other models.
        relax = max(1, math.ceil(m * (1 + m) / 8))
        law = f"geometric, (1+m)/(1+2m) = {g:.3f}"
        models.append((f"DY: unit transfers Gini, m = {m}", _DY, unit_transfer(_UNIT), m * _UNIT, g, law, relax))
    for lam in (0.25, 0.5, 0.75, 0.9):
        n = _saving_shape(lam)
        g = gamma_gini(n)
        law = f"gamma n = {n:g}: {g:.3f}"
        models.append((f"CC: saving propensity {lam:g} Gini", _CC, saving_propensity(lam), _MEAN, g, law, 1))
    streams = np.random.SeedSequence(seed).spawn(len(models))
    out: list[Check] = []
    for (name, source, split, opening, target, law, relax), stream in zip(models, streams, strict=True):
        burn_in = relax * size.burn_in
        steps = burn_in + size.steps - size.burn_in
        ledger = Ledger.open(size.agents, np.full(size.agents, opening, dtype=np.int64))
        run = run_exchange(
            ledger,
            split,
            np.random.default_rng(stream),
            steps=steps,
            burn_in=burn_in,
            sample_every=size.sample_every,
        )
        units = opening / _UNIT
        out.append(
            check(
                name,
                equals(target, size.tol, f"{law} +- {size.tol:g}"),
                source,
                [run.mean_gini],
                kind="exact",
                note=f"{size.agents:,} agents opening {units:g} unit{'' if units == 1 else 's'} each, {steps} steps;"
                f" mean of {len(run.gini)} snapshots after step {burn_in}; {run.transfers:,} transfers in"
                f" {run.batches} ledger batches, conserved over {run.rounds_closed} closed rounds;"
                f" tol = {size.tol / size.sd:.0f} x the worst seed-to-seed sd ({size.sd:g}) at this size",
            )
        )
    return out


def exact_checks(seed: int = 0, quick: bool = False) -> list[Check]:
    """Every exact check: Korinek & Suh's production results, then the exchange models."""
    return korinek_suh_checks() + exchange_checks(seed, quick)
