"""BestList: which of the values offered stay among the k best, in what
order, and what its state file says (pure Python, no Keras)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infer_callbacks.checkpoints.best_list import BestList


def offer(best, values, start=1):
    """Offer ``values`` as epochs ``start, start+1, ...``; the dropped names."""
    dropped = []
    for epoch, value in enumerate(values, start=start):
        name = f"c-{epoch}"
        if best.accepts(value, name):
            dropped += best.add(value, epoch, 10 * epoch, name)
    return dropped


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("keep", [1, 2, 3, 5])
def test_the_k_best_of_noisy_values_best_first(mode, keep):
    values = np.random.default_rng(keep).normal(size=12).round(1).tolist()  # rounding makes ties
    best = BestList(mode, keep)
    dropped = offer(best, values)
    sign = 1 if mode == "min" else -1
    # Reference: sort by value, earlier first among ties (a stable sort).
    order = sorted(range(len(values)), key=lambda i: sign * values[i])[:keep]
    assert [e["checkpoint"] for e in best.kept] == [f"c-{i + 1}" for i in order]
    assert [e["value"] for e in best.kept] == [values[i] for i in order]
    assert best.best == best.kept[0]
    kept = {e["checkpoint"] for e in best.kept}
    assert not kept & set(dropped)  # nothing kept is ever reported as removed
    assert len(set(dropped)) == len(dropped)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_a_tie_keeps_the_earlier(mode):
    """The same value twice: the second neither replaces the first (k=1) nor
    pushes out an equal worst value (`<` written as `<=` fails here)."""
    best = BestList(mode, 1)
    assert offer(best, [2.0, 2.0]) == []
    assert best.kept == [{"value": 2.0, "epoch": 1, "global_step": 10, "checkpoint": "c-1"}]
    best = BestList(mode, 2)
    worse = 3.0 if mode == "min" else 1.0
    offer(best, [2.0, worse, worse, 2.0])
    assert [e["checkpoint"] for e in best.kept] == ["c-1", "c-4"]  # the 2nd 2.0 enters, after the 1st
    assert not best.accepts(2.0, "c-5")


def test_non_finite_values_never_enter():
    best = BestList("min", 3)
    offer(best, [math.nan, math.inf, 1.0, -math.inf])
    assert [e["checkpoint"] for e in best.kept] == ["c-3"]


def test_one_checkpoint_per_name():
    """A second save under the same name (the same epoch, a mid-epoch run)
    replaces the entry only when strictly better; nothing is reported removed."""
    best = BestList("min", 3)
    best.add(2.0, 1, 5, "c-1")
    assert not best.accepts(2.5, "c-1") and not best.accepts(2.0, "c-1")
    assert best.accepts(1.5, "c-1")
    assert best.add(1.5, 1, 10, "c-1") == []
    assert best.kept == [{"value": 1.5, "epoch": 1, "global_step": 10, "checkpoint": "c-1"}]


def test_state_round_trip_and_a_single_best_file():
    best = BestList("max", 2)
    offer(best, [0.1, 0.5, 0.3])
    state = best.state("acc")
    assert {k: state[k] for k in ("monitor", "mode", "best", "epoch", "global_step", "checkpoint")} == {
        "monitor": "acc", "mode": "max", "best": 0.5, "epoch": 2, "global_step": 20, "checkpoint": "c-2"}
    assert [e["checkpoint"] for e in state["kept"]] == ["c-2", "c-3"]
    again = BestList("max", 2)
    assert again.load(state) == [] and again.kept == best.kept
    smaller = BestList("max", 1)
    assert smaller.load(state) == ["c-3"] and [e["checkpoint"] for e in smaller.kept] == ["c-2"]
    legacy = {"monitor": "acc", "mode": "max", "best": 0.5, "epoch": 2, "global_step": 20, "checkpoint": "c-2"}
    old = BestList("max", 3)
    assert old.load(legacy) == [] and [e["checkpoint"] for e in old.kept] == ["c-2"]
    assert BestList.checkpoints_of(state) == ["c-2", "c-3"]
    assert BestList.checkpoints_of(legacy) == ["c-2"]
    with pytest.raises(ValueError, match="fields"):
        BestList("max", 2).load({**state, "kept": [{"value": 1.0}]})


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3", None])
def test_keep_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=f"keep_best={bad!r}"):
        BestList("min", bad)
