"""Cost-aware halving: stop only when clearly worse than cheaper-or-similar peers."""

from __future__ import annotations

from nas.search.pruning import CostAwareHalving, Peer, quantile

RULE = CostAwareHalving(eta=3, min_peers=4, cost_slack=0.1)
CHEAP_GOOD = [Peer(cost=100, curve=[0.80 + i / 100, 0.9]) for i in range(6)]


def test_stops_a_trial_worse_than_cheaper_peers() -> None:
    reason = RULE.decide(epoch=1, accuracy=0.70, cost=200, peers=CHEAP_GOOD)
    assert reason is not None and reason.startswith("early_stopped: epoch 1")


def test_keeps_a_trial_in_the_top_third() -> None:
    assert RULE.decide(epoch=1, accuracy=0.86, cost=200, peers=CHEAP_GOOD) is None


def test_ignores_more_expensive_peers() -> None:
    # every peer costs more: a cheap trial is never compared with them
    assert RULE.decide(epoch=1, accuracy=0.10, cost=50, peers=CHEAP_GOOD) is None


def test_needs_enough_peers_at_that_epoch() -> None:
    few = CHEAP_GOOD[:3] + [Peer(cost=100, curve=[])]
    assert RULE.decide(epoch=1, accuracy=0.10, cost=200, peers=few) is None


def test_quantile_interpolates() -> None:
    assert quantile([0.0, 1.0], 0.5) == 0.5
    assert quantile([1.0, 2.0, 3.0], 1.0) == 3.0
