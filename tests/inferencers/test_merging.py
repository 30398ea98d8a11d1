"""Merging the built-ins' state (``inferencers/merging.py``), as validation
across JAX processes does: any split of the batches between "processes",
merged, gives the numbers of one inferencer fed everything (numpy over the
whole set), a process without a batch included; other inferencers are not
mergeable."""

from __future__ import annotations

import numpy as np
import pytest

from infer_callbacks import (BinaryClassificationStats, ClassificationError, ConfusionMatrix, GatherOutputs,
                             ScalarStats)
from infer_callbacks.inferencers.merging import is_mergeable, load_merged, state_of

rng = np.random.default_rng(0)
LOSS, WRONG = rng.uniform(0, 3, 53), (rng.uniform(size=53) < 0.3).astype(np.float32)
PRED, LABEL = rng.integers(0, 2, 53), rng.integers(0, 2, 53)
SIZES = [8, 8, 8, 8, 8, 8, 5]  # 53


def _batches():
    start = 0
    for size in SIZES:
        yield slice(start, start + size)
        start += size


def _run(make, feed, owner_of, processes):
    """Each process feeds its batches; then every process's state merged into process 0's."""
    infs = [make() for _ in range(processes)]
    for inf in infs:
        inf.before_inference()
    for k, rows in enumerate(_batches()):
        feed(infs[owner_of(k)], rows)
    states = [state_of(inf) for inf in infs]
    load_merged(infs[0], states)
    return infs[0].after_inference()


CASES = {
    "scalar": (lambda: ScalarStats(["loss", "batch_mean"]),
               lambda inf, r: inf.on_fetches([LOSS[r], np.float64(LOSS[r].mean())], len(LOSS[r])),
               {"validation_loss": LOSS.mean(), "validation_batch_mean": LOSS.mean()}),
    "error": (lambda: ClassificationError(),
              lambda inf, r: inf.on_fetches([WRONG[r]], len(WRONG[r])),
              {"validation_error": WRONG.mean()}),
    "binary": (lambda: BinaryClassificationStats("pred", "label"),
               lambda inf, r: inf.on_fetches([PRED[r], LABEL[r]], len(PRED[r])),
               {"val_precision": ((PRED == 1) & (LABEL == 1)).sum() / (PRED == 1).sum(),
                "val_recall": ((PRED == 1) & (LABEL == 1)).sum() / (LABEL == 1).sum()}),
    "confusion": (lambda: ConfusionMatrix("label", "pred", 2),
                  lambda inf, r: inf.on_fetches([LABEL[r], PRED[r]], len(PRED[r])),
                  {"validation_mean_recall": np.mean([((PRED == c) & (LABEL == c)).sum() / (LABEL == c).sum()
                                                      for c in (0, 1)])}),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("processes,owner", [(2, lambda k: k % 2), (3, lambda k: k % 3),
                                             (9, lambda k: k % 9),   # processes 7 and 8 see no batch
                                             (2, lambda k: 0)])
def test_merged_state_equals_numpy_over_the_whole_set(case, processes, owner):
    make, feed, reference = CASES[case]
    got = _run(make, feed, owner, processes)
    for key, value in reference.items():
        assert got[key] == pytest.approx(value, rel=1e-12), (key, got)


def test_only_the_built_ins_themselves_are_mergeable():
    class Mine(ScalarStats):
        pass

    assert is_mergeable(ScalarStats("loss")) and is_mergeable(ConfusionMatrix("a", "b", 3))
    assert not is_mergeable(Mine("loss"))
    gather = GatherOutputs(["x"], lambda out: {})
    assert not is_mergeable(gather)
    with pytest.raises(TypeError, match="no mergeable state"):
        state_of(gather)
