"""chunk: the host side of one step call, cut back into the dataset's batches
(whole-batch and split modes) or taken as one block per name."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from infer_callbacks.runner.engine.tensorflow.chunk import Chunk
from infer_callbacks.runner.engine.tensorflow.step import NUM_SAMPLES

SPECS = {"v": tf.TensorSpec([None, 2], tf.float32), NUM_SAMPLES: tf.TensorSpec([1], tf.int64)}
HOST_RANKS = {"v": 2, NUM_SAMPLES: 0}


def _chunk(entries, per_round, merge):
    """A Chunk of what a step returns for per-replica entries (None: no batch)."""
    valid = np.array([e is not None for e in entries])
    filled = [e if e is not None else {"v": np.zeros((1, 2), np.float32), NUM_SAMPLES: np.int64(1)}
              for e in entries]
    values = {"v": np.concatenate([e["v"].ravel() for e in filled]),
              NUM_SAMPLES: np.array([e[NUM_SAMPLES] for e in filled], np.int64)}
    sizes = np.array([[e["v"].size, 1] for e in filled], np.int64)  # "v" static [?, 2]: no shapes
    return Chunk(valid, values, sizes, {}, SPECS, HOST_RANKS, per_round, merge)


def _entry(rows, start):
    return {"v": np.arange(start, start + 2 * rows, dtype=np.float32).reshape(rows, 2), NUM_SAMPLES: np.int64(rows)}


def test_batches_whole_mode_skips_idle_replicas():
    # 3 replicas, 2 rounds; in the last round replicas 1 and 2 have no batch
    entries = [_entry(3, 0), _entry(3, 100), _entry(2, 200), _entry(1, 300), None, None]
    chunk = _chunk(entries, per_round=3, merge=False)
    got = list(chunk.batches())
    assert len(got) == 4
    for g, e in zip(got, entries[:4]):
        np.testing.assert_array_equal(g["v"], e["v"])
        assert g[NUM_SAMPLES] == e[NUM_SAMPLES]
    # the whole call at once: the valid batches concatenated, idle replicas left out
    np.testing.assert_array_equal(chunk.block("v"), np.concatenate([e["v"] for e in entries[:4]]))
    assert chunk.num_samples() == 9 and chunk.block(NUM_SAMPLES) is None


def test_batches_split_mode_merges_a_round_back_into_its_batch():
    # 2 replicas: a batch of 5 split 3 + 2, then a batch of 1 split 1 + 0
    entries = [_entry(3, 0), _entry(2, 6), _entry(1, 50), None]
    chunk = _chunk(entries, per_round=2, merge=True)
    got = list(chunk.batches())
    assert len(got) == 2
    np.testing.assert_array_equal(got[0]["v"], np.arange(10, dtype=np.float32).reshape(5, 2))
    assert got[0][NUM_SAMPLES] == 5
    np.testing.assert_array_equal(got[1]["v"], entries[2]["v"])
    assert got[1][NUM_SAMPLES] == 1
    np.testing.assert_array_equal(chunk.block("v"), np.concatenate([got[0]["v"], got[1]["v"]]))
