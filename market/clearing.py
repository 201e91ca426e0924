"""Markets as pure functions over arrays: labour matching, goods search, call auctions, pro rata.

None of these touch the ledger: they return who trades what with whom, and the caller settles.
Randomness comes only from the ``numpy.random.Generator`` passed in, so a seed fixes the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "AuctionResult",
    "Purchases",
    "call_auction",
    "goods_market",
    "match_labour",
    "pair_fills",
    "pro_rata",
]


def match_labour(
    rng: np.random.Generator,
    reservation_wage: NDArray[np.float64],
    vacancies: NDArray[np.int64],
    wage_offer: NDArray[np.float64],
    applications: int,
) -> NDArray[np.int64]:
    """Match job seekers to vacancies; returns each seeker's new employer, or -1.

    Each seeker applies to ``applications`` firms drawn in proportion to their vacancies and
    takes the best offer at or above its reservation wage; a firm with more acceptances than
    vacancies keeps a random subset (one matching pass per round, as in the bottom-up macro models).
    """
    n = reservation_wage.size
    out = np.full(n, -1, dtype=np.int64)
    total = int(vacancies.sum())
    if n == 0 or total == 0 or applications <= 0:
        return out
    p = vacancies / total
    picks = rng.choice(vacancies.size, size=(n, applications), p=p)
    offers = np.where(wage_offer[picks] >= reservation_wage[:, None], wage_offer[picks], -np.inf)
    best = np.argmax(offers, axis=1)
    ok = np.isfinite(offers[np.arange(n), best])
    seekers = np.flatnonzero(ok)
    firm = picks[seekers, best[seekers]]
    # rank acceptances inside each firm in random order; keep the first `vacancies[firm]`
    order = np.lexsort((rng.random(seekers.size), firm))
    firm_sorted = firm[order]
    starts = np.searchsorted(firm_sorted, firm_sorted, side="left")
    rank = np.arange(firm_sorted.size) - starts
    hired = rank < vacancies[firm_sorted]
    out[seekers[order[hired]]] = firm_sorted[hired]
    return out


@dataclass(frozen=True, slots=True)
class Purchases:
    """Who bought how much from whom: one row per (buyer, seller) visit with a sale."""

    buyer: NDArray[np.int64]
    seller: NDArray[np.int64]
    quantity: NDArray[np.float64]
    amount: NDArray[np.int64]
    unmet: NDArray[np.float64]  # per seller: quantity demanded there but not served (rationing)


def goods_market(
    rng: np.random.Generator,
    budget: NDArray[np.int64],
    price: NDArray[np.float64],
    stock: NDArray[np.float64],
    search: int | NDArray[np.int64],
) -> Purchases:
    """Buyers spend ``budget`` cents at the cheapest of ``search`` randomly sampled sellers.

    ``search`` is one number for every buyer or one per buyer (households sample a few sellers,
    firms and the state canvass many): all buyers are in one market, none served before another.
    Visits go cheapest first, one visit per buyer per pass. When a seller's stock is short, every
    buyer visiting it in that pass is served the same fraction (proportional rationing) and carries
    the rest of its budget to its next seller. ``price`` is in cents per unit; amounts are whole
    cents, never above budget. ``unmet`` is the demand each seller turned away, at every pass:
    what it saw and could not serve, the signal of the price-or-quantity rule (a buyer turned away
    twice counts at both).
    """
    n, m = budget.size, price.size
    stock = stock.astype(np.float64).copy()
    remaining = budget.astype(np.int64).copy()
    unmet = np.zeros(m, dtype=np.float64)
    rows: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]] = []
    if n == 0 or m == 0:
        e = np.empty(0, dtype=np.int64)
        return Purchases(e, e, np.empty(0), e, unmet)
    counts = np.broadcast_to(np.asarray(search, dtype=np.int64), (n,))
    # buyers grouped by how many sellers they sample: one sorted pick matrix per group
    groups = [(np.flatnonzero(counts == k), int(k)) for k in np.unique(counts) if k > 0]
    picks: list[NDArray[np.int64]] = []
    for members, k in groups:
        pk = rng.integers(0, m, size=(members.size, k))
        picks.append(np.take_along_axis(pk, np.argsort(price[pk], axis=1, kind="stable"), axis=1))
    safe_price = np.maximum(price, 1e-9)
    for j in range(max((k for _, k in groups), default=0)):
        who = [(g[0], pk[:, j]) for g, pk in zip(groups, picks, strict=True) if j < g[1]]
        buyers = np.concatenate([b for b, _ in who])
        sellers = np.concatenate([f for _, f in who])
        live = remaining[buyers] > 0
        active, f = buyers[live], sellers[live]
        if active.size == 0:
            if all(not (remaining[g[0]] > 0).any() for g in groups):
                break
            continue
        want = remaining[active] / safe_price[f]
        demand = np.bincount(f, weights=want, minlength=m)
        fill = np.divide(stock, demand, out=np.ones(m), where=demand > 0).clip(max=1.0)
        # served in full: spend the whole remaining budget exactly (want * price can round below it)
        amount = np.where(fill[f] >= 1.0, remaining[active], np.floor(want * fill[f] * safe_price[f]).astype(np.int64))
        amount = np.minimum(amount, remaining[active])
        qty = amount / safe_price[f]
        unmet += np.bincount(f, weights=want - qty, minlength=m)
        stock = np.maximum(stock - np.bincount(f, weights=qty, minlength=m), 0.0)
        remaining[active] -= amount
        sold = amount > 0
        rows.append((active[sold], f[sold], qty[sold], amount[sold]))
    if not rows:
        e = np.empty(0, dtype=np.int64)
        return Purchases(e, e, np.empty(0), e, unmet)
    buyer, seller, qty, amount = (np.concatenate(c) for c in zip(*rows, strict=True))
    return Purchases(buyer, seller, qty, amount, unmet)


@dataclass(frozen=True, slots=True)
class AuctionResult:
    price: float  # clearing price (last price when nothing trades)
    volume: int
    bid_fill: NDArray[np.int64]
    ask_fill: NDArray[np.int64]


def call_auction(
    bid_price: NDArray[np.float64],
    bid_qty: NDArray[np.int64],
    ask_price: NDArray[np.float64],
    ask_qty: NDArray[np.int64],
    last_price: float,
) -> AuctionResult:
    """Clear one token's limit orders at the single price that maximises traded volume.

    Ties between prices go to the one closest to ``last_price`` (then the lower one). The long
    side is rationed pro rata in whole shares; orders priced through the clearing price fill first.
    """
    bq = np.asarray(bid_qty, dtype=np.int64)
    aq = np.asarray(ask_qty, dtype=np.int64)
    zero_b, zero_a = np.zeros(bq.size, np.int64), np.zeros(aq.size, np.int64)
    if bq.sum() == 0 or aq.sum() == 0:
        return AuctionResult(float(last_price), 0, zero_b, zero_a)
    candidates = np.unique(np.concatenate([bid_price, ask_price]))
    # demand at c: bids priced >= c; supply at c: asks priced <= c (cumulative sums over sorted prices)
    ob, oa = np.argsort(bid_price), np.argsort(ask_price)
    cum_b = np.concatenate([[0], np.cumsum(bq[ob])])
    cum_a = np.concatenate([[0], np.cumsum(aq[oa])])
    demand = cum_b[-1] - cum_b[np.searchsorted(bid_price[ob], candidates, side="left")]
    supply = cum_a[np.searchsorted(ask_price[oa], candidates, side="right")]
    volume = np.minimum(demand, supply)
    best = volume.max()
    if best == 0:
        return AuctionResult(float(last_price), 0, zero_b, zero_a)
    tied = candidates[volume == best]
    price = float(tied[np.argmin(np.abs(tied - last_price))])
    return AuctionResult(
        price,
        int(best),
        _fill_side(bid_price, bq, best, price, buy=True),
        _fill_side(ask_price, aq, best, price, buy=False),
    )


def _fill_side(
    px: NDArray[np.float64], qty: NDArray[np.int64], volume: int, price: float, *, buy: bool
) -> NDArray[np.int64]:
    eligible = px >= price if buy else px <= price
    strict = px > price if buy else px < price
    fill = np.zeros(qty.size, dtype=np.int64)
    through = int(qty[strict].sum())
    if through >= volume:  # only possible on the side that is not rationed at the margin
        fill[strict] = pro_rata(volume, qty * strict)[strict]
        return fill
    fill[strict] = qty[strict]
    marginal = eligible & ~strict
    fill[marginal] = pro_rata(volume - through, qty * marginal)[marginal]
    return fill


def pro_rata(total: int, weights: NDArray[np.int64] | NDArray[np.float64]) -> NDArray[np.int64]:
    """Split ``total`` whole units in proportion to ``weights`` exactly (largest remainder).

    Every unit is assigned when any weight is positive, so a split never loses or invents units.
    """
    w = np.asarray(weights, dtype=np.float64)
    s = w.sum()
    if total <= 0 or s <= 0:
        return np.zeros(w.size, dtype=np.int64)
    exact = w * (total / s)
    out: NDArray[np.int64] = np.floor(exact).astype(np.int64)  # numpy types a float64 sum as Any
    short = int(total - out.sum())
    if short > 0:
        order = np.argsort(-(exact - out), kind="stable")
        out[order[:short]] += 1
    return out


def pair_fills(
    bid_fill: NDArray[np.int64], ask_fill: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Pair filled bids with filled asks so each share has one buyer and one seller.

    Lays both sides' fills end to end on one line of shares and cuts it wherever either side
    changes: at most ``buyers + sellers - 1`` (bid, ask, shares) pairs, deterministic.
    """
    b = np.flatnonzero(bid_fill > 0)
    a = np.flatnonzero(ask_fill > 0)
    cb = np.cumsum(bid_fill[b])
    ca = np.cumsum(ask_fill[a])
    if cb.size == 0 or ca.size == 0 or cb[-1] != ca[-1]:
        if cb.size == 0 and ca.size == 0:
            e = np.empty(0, dtype=np.int64)
            return e, e, e
        raise ValueError("bid and ask fills must total the same volume")
    cuts = np.union1d(cb, ca)
    starts = np.concatenate([[0], cuts[:-1]])
    bi = b[np.searchsorted(cb, starts, side="right")]
    ai = a[np.searchsorted(ca, starts, side="right")]
    return bi, ai, (cuts - starts).astype(np.int64)
