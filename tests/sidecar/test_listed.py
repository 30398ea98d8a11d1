"""Which listed checkpoints the sidecar still evaluates (``listed.pending``),
whatever their format: those after the last one handled, in order; one
deleted before its turn (its files gone, or no longer listed) is skipped."""

from __future__ import annotations

from infer_callbacks.sidecar.listed import Listed, pending


def _c(n, gone=False):
    return Listed(f"ckpt-{n}", f"/d/ckpt-{n}", n, gone)


def test_after_the_last_handled_in_order_and_skips_only_before_the_next():
    state = {"last_number": 3, "seen": {}}
    todo, skipped = pending(state, [_c(9), _c(2), _c(6, gone=True), _c(5)])
    assert [c.number for c in todo] == [5, 9] and skipped == []   # 6 is after 5: not yet certain
    # 5 evaluated: the evaluator marks it done (as SidecarEvaluator._mark_done does)
    state["last_number"] = 5
    state["seen"] = {n: name for n, name in state["seen"].items() if int(n) > 5}
    todo, skipped = pending(state, [_c(9)])                        # 6 disappeared from the list
    assert [c.number for c in todo] == [9] and skipped == ["ckpt-6"]
    assert state["last_number"] == 6 and "6" not in state["seen"]


def test_nothing_left_skips_every_gone_one():
    state = {"last_number": 0, "seen": {"4": "ckpt-4"}}
    todo, skipped = pending(state, [_c(7, gone=True)])
    assert todo == [] and skipped == ["ckpt-4", "ckpt-7"] and state["last_number"] == 7
