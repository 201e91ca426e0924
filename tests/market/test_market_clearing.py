"""Tests for :mod:`tokenomy.market.clearing`."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenomy.market.clearing import call_auction, goods_market, match_labour, pair_fills, pro_rata

SETTINGS = settings(max_examples=200, deadline=None)  # the central properties
QUICK = settings(max_examples=100, deadline=None)  # secondary properties
seeds = st.integers(0, 2**32 - 1)


# -- goods_market -----------------------------------------------------------------------------


@st.composite
def goods_case(draw):
    n = draw(st.integers(1, 12))
    m = draw(st.integers(1, 6))
    budget = np.array(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)), dtype=np.int64)
    price = np.array(draw(st.lists(st.floats(1.0, 5000.0), min_size=m, max_size=m)))
    stock = np.array(draw(st.lists(st.floats(0.0, 2000.0), min_size=m, max_size=m)))
    search = draw(st.integers(1, 4))
    return budget, price, stock, search, draw(seeds)


@QUICK
@given(goods_case())
def test_goods_market_respects_budgets_stock_prices_and_seed(case):
    budget, price, stock, search, seed = case
    b0, s0 = budget.copy(), stock.copy()
    p = goods_market(np.random.default_rng(seed), budget, price, stock, search)
    # inputs are not mutated
    assert np.array_equal(budget, b0) and np.array_equal(stock, s0)
    assert p.amount.dtype == np.int64 and p.buyer.dtype.kind == "i" and p.seller.dtype.kind == "i"
    assert p.buyer.size == p.seller.size == p.quantity.size == p.amount.size
    assert np.all(p.amount > 0)  # only rows with a sale are reported
    assert np.all((p.buyer >= 0) & (p.buyer < budget.size))
    assert np.all((p.seller >= 0) & (p.seller < price.size))
    spent = np.bincount(p.buyer, weights=p.amount, minlength=budget.size)
    assert np.all(spent <= budget)
    sold = np.bincount(p.seller, weights=p.quantity, minlength=price.size)
    assert np.all(sold <= stock * (1 + 1e-9) + 1e-9)
    np.testing.assert_allclose(p.quantity * price[p.seller], p.amount, rtol=1e-9)
    assert p.unmet.shape == (price.size,) and np.all(p.unmet >= -1e-9)
    # the generator is the only source of randomness: same seed, same result
    again = goods_market(np.random.default_rng(seed), budget, price, stock, search)
    for f in ("buyer", "seller", "quantity", "amount", "unmet"):
        assert np.array_equal(getattr(p, f), getattr(again, f))


@pytest.mark.parametrize("search", [1, 3])
def test_goods_market_seller_with_ample_stock_serves_everyone(search):
    # price 4 cents (a power of two keeps budget/price*price exact in floats)
    budget = np.array([100, 250, 7, 1000, 1], dtype=np.int64)
    p = goods_market(np.random.default_rng(1), budget, np.array([4.0]), np.array([1e9]), search)
    assert sorted(p.buyer.tolist()) == [0, 1, 2, 3, 4]
    spent = np.bincount(p.buyer, weights=p.amount, minlength=5)
    assert spent.tolist() == budget.tolist()
    assert p.unmet.tolist() == [0.0]
    np.testing.assert_allclose(np.bincount(p.buyer, weights=p.quantity), budget / 4.0)


def test_goods_market_ample_stock_serves_everyone_random_prices():
    rng = np.random.default_rng(7)
    budget = rng.integers(1, 10**6, 200)
    price = rng.uniform(1.0, 1000.0, 3)
    p = goods_market(np.random.default_rng(3), budget, price, np.full(3, 1e12), 1)
    spent = np.bincount(p.buyer, weights=p.amount, minlength=budget.size)
    # every buyer is served and spends exactly its budget; nothing is left unmet
    assert spent.tolist() == budget.tolist()
    assert np.all(p.unmet == 0.0)


def test_goods_market_ample_stock_spends_whole_budget_at_non_dyadic_price():
    # regression: (61 / 7) * 7 == 60.99999999999999 in floats, and flooring it used to lose a cent
    p = goods_market(np.random.default_rng(0), np.array([61], dtype=np.int64), np.array([7.0]), np.array([1e9]), 1)
    assert p.amount.tolist() == [61]
    assert p.unmet.tolist() == [0.0]


@QUICK
@given(
    st.lists(st.integers(1, 10**6), min_size=1, max_size=20),
    st.floats(0.05, 0.95),
    seeds,
)
def test_goods_market_rations_short_stock_proportionally(budgets, short, seed):
    budget = np.array(budgets, dtype=np.int64)
    price = np.array([8.0])
    demand = budget.sum() / 8.0
    stock = np.array([short * demand])
    p = goods_market(np.random.default_rng(seed), budget, price, stock, 1)
    spent = np.bincount(p.buyer, weights=p.amount, minlength=budget.size)
    # every buyer gets the same fraction of what it wanted (to within the cent floored away)
    exact = budget * short
    assert np.all(spent <= exact + 1e-6)
    assert np.all(spent >= exact - 1 - 1e-6)
    sold = p.quantity.sum()
    assert sold <= stock[0] * (1 + 1e-12)
    assert sold >= stock[0] - budget.size / 8.0
    # the unserved remainder is recorded as unmet demand at the seller
    assert p.unmet[0] == pytest.approx(demand - sold, rel=1e-9)


def test_goods_market_goes_to_the_cheapest_sampled_seller_first():
    budget = np.full(50, 400, dtype=np.int64)
    price = np.array([8.0, 2.0, 4.0])
    stock = np.array([1e9, 1e9, 1e9])
    # with 40 draws over 3 sellers every buyer samples the cheapest (probability of missing it ~1e-7)
    p = goods_market(np.random.default_rng(5), budget, price, stock, 40)
    assert p.seller.tolist() == [1] * 50
    assert p.amount.tolist() == [400] * 50
    np.testing.assert_allclose(p.quantity, 200.0)


def test_goods_market_rationed_buyer_carries_budget_to_next_seller():
    budget = np.array([800], dtype=np.int64)
    price = np.array([2.0, 4.0])
    stock = np.array([100.0, 1e9])  # the cheap seller can take only 200 of the 800 cents
    p = goods_market(np.random.default_rng(0), budget, price, stock, 60)
    got = dict(zip(p.seller.tolist(), p.amount.tolist(), strict=True))
    assert got == {0: 200, 1: 600}


def test_goods_market_all_zero_budgets_buy_nothing():
    # regression: the first pass broke out before recording a row and unpacking zip(*[]) raised ValueError
    p = goods_market(np.random.default_rng(0), np.array([0, 0], np.int64), np.array([1.0]), np.array([5.0]), 1)
    assert p.amount.size == 0
    assert p.unmet.tolist() == [0.0]


def test_goods_market_empty_sides():
    e = goods_market(np.random.default_rng(0), np.zeros(0, np.int64), np.array([1.0]), np.array([5.0]), 2)
    assert e.amount.size == 0 and e.unmet.tolist() == [0.0]
    e = goods_market(np.random.default_rng(0), np.array([5], np.int64), np.zeros(0), np.zeros(0), 2)
    assert e.amount.size == 0 and e.unmet.size == 0


# -- match_labour -----------------------------------------------------------------------------


@st.composite
def labour_case(draw):
    n = draw(st.integers(0, 40))
    m = draw(st.integers(1, 8))
    res = np.array(draw(st.lists(st.floats(0.0, 100.0), min_size=n, max_size=n)))
    vac = np.array(draw(st.lists(st.integers(0, 6), min_size=m, max_size=m)), dtype=np.int64)
    offer = np.array(draw(st.lists(st.floats(0.0, 100.0), min_size=m, max_size=m)))
    apps = draw(st.integers(1, 5))
    return res, vac, offer, apps, draw(seeds)


@QUICK
@given(labour_case())
def test_match_labour_invariants(case):
    res, vac, offer, apps, seed = case
    out = match_labour(np.random.default_rng(seed), res, vac, offer, apps)
    assert out.shape == res.shape and out.dtype == np.int64
    assert np.all((out >= -1) & (out < vac.size))
    hired = out[out >= 0]
    per_firm = np.bincount(hired, minlength=vac.size)
    assert np.all(per_firm <= vac)
    matched = np.flatnonzero(out >= 0)
    assert np.all(offer[out[matched]] >= res[matched])
    # same seed, same result
    again = match_labour(np.random.default_rng(seed), res, vac, offer, apps)
    assert np.array_equal(out, again)


def test_match_labour_everyone_hired_when_one_firm_has_room():
    res = np.linspace(1.0, 10.0, 30)
    out = match_labour(np.random.default_rng(0), res, np.array([30], np.int64), np.array([10.0]), 2)
    assert out.tolist() == [0] * 30


def test_match_labour_firm_keeps_exactly_its_vacancies():
    res = np.zeros(30)
    out = match_labour(np.random.default_rng(0), res, np.array([0, 7], np.int64), np.array([99.0, 5.0]), 3)
    assert (out == 1).sum() == 7
    assert (out == 0).sum() == 0  # a firm without vacancies is never applied to
    assert (out == -1).sum() == 23


def test_match_labour_reservation_above_every_offer_means_unemployed():
    res = np.array([5.0, 50.0, 11.0, 10.0])
    out = match_labour(np.random.default_rng(0), res, np.array([10, 10], np.int64), np.array([10.0, 8.0]), 6)
    assert out[1] == -1 and out[2] == -1
    assert out[0] == 0 and out[3] == 0  # 10.0 >= 10.0: an offer at the reservation wage is taken


def test_match_labour_takes_best_offer_among_applications():
    # with 40 applications over 2 firms every seeker sees both and picks the better one
    res = np.zeros(20)
    out = match_labour(np.random.default_rng(2), res, np.array([100, 100], np.int64), np.array([3.0, 4.0]), 40)
    assert out.tolist() == [1] * 20


def test_match_labour_no_vacancies_or_no_seekers():
    assert match_labour(np.random.default_rng(0), np.ones(3), np.zeros(2, np.int64), np.ones(2), 2).tolist() == [-1] * 3
    assert match_labour(np.random.default_rng(0), np.ones(0), np.ones(2, np.int64), np.ones(2), 2).size == 0


def test_match_labour_zero_applications_leaves_everyone_unmatched():
    # regression: np.argmax over an empty axis used to raise ValueError
    out = match_labour(np.random.default_rng(0), np.zeros(3), np.array([2, 1], np.int64), np.array([1.0, 1.0]), 0)
    assert out.tolist() == [-1, -1, -1]


# -- call_auction -----------------------------------------------------------------------------


def _ref_volume(bp, bq, ap, aq, c):
    demand = sum(q for p, q in zip(bp, bq, strict=True) if p >= c)
    supply = sum(q for p, q in zip(ap, aq, strict=True) if p <= c)
    return min(demand, supply)


prices = st.integers(90, 110).map(float)  # a coarse tick grid makes ties and crosses common


@st.composite
def book(draw):
    side = st.lists(st.tuples(prices, st.integers(0, 50)), max_size=8)
    bids, asks = draw(side), draw(side)
    bp = np.array([o[0] for o in bids], dtype=np.float64)
    bq = np.array([o[1] for o in bids], dtype=np.int64)
    ap = np.array([o[0] for o in asks], dtype=np.float64)
    aq = np.array([o[1] for o in asks], dtype=np.int64)
    last = draw(st.floats(85.0, 115.0))
    return bp, bq, ap, aq, last


@SETTINGS
@given(book())
def test_call_auction_clears_at_volume_maximising_price(b):
    bp, bq, ap, aq, last = b
    r = call_auction(bp, bq, ap, aq, last)
    assert r.bid_fill.shape == bq.shape and r.ask_fill.shape == aq.shape
    assert r.bid_fill.dtype == np.int64 and r.ask_fill.dtype == np.int64

    cands = sorted(set(bp.tolist()) | set(ap.tolist()))
    vols = {c: _ref_volume(bp, bq, ap, aq, c) for c in cands}
    best = max(vols.values(), default=0)
    # any price at all (not only order prices) cannot beat it
    for c in np.arange(85.0, 115.0, 0.5):
        assert _ref_volume(bp, bq, ap, aq, c) <= best
    assert r.volume == best

    if best == 0:
        assert r.price == last
        assert not r.bid_fill.any() and not r.ask_fill.any()
        return
    assert vols[r.price] == best
    tied = [c for c, v in vols.items() if v == best]
    # ties: closest to the last price, then the lower price
    assert r.price == min(tied, key=lambda c: (abs(c - last), c))

    assert np.all(r.bid_fill >= 0) and np.all(r.ask_fill >= 0)
    assert np.all(r.bid_fill <= bq) and np.all(r.ask_fill <= aq)
    assert r.bid_fill.sum() == r.ask_fill.sum() == r.volume
    # limits are respected: nobody trades at a price worse than its limit
    assert not r.bid_fill[bp < r.price].any()
    assert not r.ask_fill[ap > r.price].any()
    # price priority: a marginal order fills only once every order priced through is full
    if r.bid_fill[bp == r.price].any():
        assert np.array_equal(r.bid_fill[bp > r.price], bq[bp > r.price])
    if r.ask_fill[ap == r.price].any():
        assert np.array_equal(r.ask_fill[ap < r.price], aq[ap < r.price])


def test_call_auction_no_trade_when_book_does_not_cross():
    r = call_auction(np.array([99.0, 98.0]), np.array([10, 10]), np.array([100.0, 101.0]), np.array([5, 5]), 100.5)
    assert r.volume == 0 and r.price == 100.5
    assert r.bid_fill.tolist() == [0, 0] and r.ask_fill.tolist() == [0, 0]


def test_call_auction_one_sided_book():
    r = call_auction(np.array([99.0]), np.array([10]), np.zeros(0), np.zeros(0, np.int64), 50.0)
    assert r.volume == 0 and r.price == 50.0 and r.ask_fill.size == 0


def test_call_auction_worked_example():
    # demand at 8, 9, 9.5, 10: 10, 10, 5, 5; supply: 3, 3, 7, 7 -> volume 5 at 9.5 or 10; 9.5 is closer to 9
    r = call_auction(np.array([10.0, 9.0]), np.array([5, 5]), np.array([8.0, 9.5]), np.array([3, 4]), 9.0)
    assert (r.price, r.volume) == (9.5, 5)
    assert r.bid_fill.tolist() == [5, 0]
    assert r.ask_fill.tolist() == [3, 2]


def test_call_auction_rations_the_long_side_pro_rata():
    # supply 10 at 100; demand 30 at 100 split 10:20 -> fills 10/3, 20/3 rounded by largest remainder
    r = call_auction(np.array([100.0, 100.0]), np.array([10, 20]), np.array([100.0]), np.array([10]), 100.0)
    assert r.volume == 10
    assert r.bid_fill.tolist() == [3, 7]
    assert r.ask_fill.tolist() == [10]


# -- pro_rata ---------------------------------------------------------------------------------


@SETTINGS
@given(
    st.integers(0, 10**9),
    st.lists(st.integers(1, 10**6), min_size=1, max_size=30),
)
def test_pro_rata_sums_exactly_and_each_share_within_one(total, weights):
    out = pro_rata(total, np.array(weights, dtype=np.int64))
    assert out.dtype == np.int64
    assert int(out.sum()) == total
    s = sum(weights)
    for o, w in zip(out.tolist(), weights, strict=True):
        assert abs(Fraction(o) - Fraction(total * w, s)) < 1
        assert o >= 0


@QUICK
@given(
    st.integers(1, 10**6),
    st.floats(0.001, 1e3),
    st.lists(st.one_of(st.just(0.0), st.floats(0.001, 1e3)), max_size=29),
)
def test_pro_rata_float_weights_and_zero_weights_get_nothing(total, first, weights):
    w = np.array([first, *weights])
    out = pro_rata(total, w)
    assert int(out.sum()) == total
    assert not out[w == 0].any()
    exact = w * total / w.sum()
    assert np.all(np.abs(out - exact) < 1 + 1e-9)


def test_pro_rata_degenerate_inputs():
    assert pro_rata(0, np.array([1, 2])).tolist() == [0, 0]
    assert pro_rata(-5, np.array([1, 2])).tolist() == [0, 0]
    assert pro_rata(5, np.array([0, 0])).tolist() == [0, 0]
    assert pro_rata(7, np.array([1, 1, 1])).tolist() == [3, 2, 2]  # ties go to the first (stable)


# -- pair_fills -------------------------------------------------------------------------------


@QUICK
@given(
    st.lists(st.integers(0, 30), min_size=1, max_size=10),
    st.lists(st.integers(0, 30), min_size=1, max_size=10),
)
def test_pair_fills_reproduce_both_sides(bids, asks):
    diff = sum(bids) - sum(asks)
    if diff > 0:
        asks = [*asks, diff]
    elif diff < 0:
        bids = [*bids, -diff]
    bf, af = np.array(bids, np.int64), np.array(asks, np.int64)
    bi, ai, q = pair_fills(bf, af)
    assert bi.size == ai.size == q.size
    assert np.all(q > 0)
    assert np.array_equal(np.bincount(bi, weights=q, minlength=bf.size).astype(np.int64), bf)
    assert np.array_equal(np.bincount(ai, weights=q, minlength=af.size).astype(np.int64), af)
    nb, na = int((bf > 0).sum()), int((af > 0).sum())
    if nb and na:
        assert q.size <= nb + na - 1
    else:
        assert q.size == 0
    # deterministic
    bi2, ai2, q2 = pair_fills(bf, af)
    assert np.array_equal(bi, bi2) and np.array_equal(ai, ai2) and np.array_equal(q, q2)


def test_pair_fills_rejects_unequal_totals():
    with pytest.raises(ValueError):
        pair_fills(np.array([3, 2]), np.array([4]))
    with pytest.raises(ValueError):
        pair_fills(np.array([3]), np.array([0]))


def test_pair_fills_from_an_auction():
    r = call_auction(
        np.array([105.0, 103.0, 101.0, 100.0]),
        np.array([7, 5, 9, 4]),
        np.array([99.0, 100.0, 102.0]),
        np.array([6, 8, 10]),
        101.0,
    )
    assert r.volume > 0
    bi, ai, q = pair_fills(r.bid_fill, r.ask_fill)
    assert int(q.sum()) == r.volume
    assert np.array_equal(np.bincount(bi, weights=q, minlength=4).astype(np.int64), r.bid_fill)
    assert np.array_equal(np.bincount(ai, weights=q, minlength=3).astype(np.int64), r.ask_fill)


def test_goods_market_takes_a_search_count_per_buyer_and_serves_no_class_first():
    """Households sample one seller, a large buyer samples several; with stock short, both are
    rationed in the same pass by the same fraction: the large buyer does not just take what
    households leave (nor do households get served first)."""
    price, stock = np.array([2.0]), np.array([52.0])
    budget = np.array([100, 100, 100, 100, 10_000], dtype=np.int64)
    p = goods_market(np.random.default_rng(0), budget, price, stock, np.array([1, 1, 1, 1, 3]))
    got = np.bincount(p.buyer, weights=p.quantity, minlength=5)
    fill = 52.0 / (budget.sum() / 2.0)  # one pass: every buyer is turned away in the same proportion
    assert np.allclose(got, np.floor(budget * fill) / 2.0, atol=0.5)
    assert got[4] > 10 * got[:4].sum() / 4  # the large buyer's share is its budget's, not the leftovers
    assert got.sum() <= 52.0 + 1e-9 and np.all(np.bincount(p.buyer, weights=p.amount, minlength=5) <= budget)
    # a scalar search is the same as that count for everyone
    price4, stock4 = np.array([1.0, 2.0, 3.0, 4.0]), np.full(4, 50.0)
    a = goods_market(np.random.default_rng(5), budget, price4, stock4, 2)
    b = goods_market(np.random.default_rng(5), budget, price4, stock4, np.full(5, 2))
    assert np.array_equal(a.buyer, b.buyer) and np.array_equal(a.amount, b.amount)
