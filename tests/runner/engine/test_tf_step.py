"""step: the compiled multi-round validation step, compared with the batches
the dataset yields (numpy; the host side is tested in test_tf_chunk.py); several
devices are covered in test_data_parallel.py (subprocess)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks.runner.engine.tensorflow.chunk import Chunk
from infer_callbacks.runner.engine.tensorflow.step import NUM_SAMPLES, make_step

pytestmark = pytest.mark.tensorflow_only("the TensorFlow engine's step")

LENGTHS = [3, 9, 2, 7, 5, 11, 4, 6, 8, 1, 10]


def _padded(batch_size=2):
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=n).astype("float32") for n in LENGTHS]
    ds = tf.data.Dataset.from_generator(lambda: iter(seqs), output_signature=tf.TensorSpec([None], tf.float32))
    return ds.padded_batch(batch_size)


def _replica_fn(batch):
    # As TowerSpec.replica_fn hands them over: rank-0 values reshaped to [1]
    # (their true rank goes in `ranks`, see RANKS).
    return {"double": batch * 2.0, "row_sum": tf.reduce_sum(batch, 1),
            NUM_SAMPLES: tf.shape(batch, out_type=tf.int64)[:1]}


def _specs(ds):
    concrete = tf.function(_replica_fn).get_concrete_function(ds.element_spec)
    return {k: tf.TensorSpec.from_tensor(v) for k, v in concrete.structured_outputs.items()}


RANKS = {"double": 2, "row_sum": 1, NUM_SAMPLES: 0}


def _run_all(step, ds, limit, per_round=1, merge=False, max_rounds=64):
    """Every call's (rounds, per-batch dicts) until a call runs fewer rounds
    than it could (the input is exhausted)."""
    iterator = iter(ds)
    calls = []
    while True:
        rounds, valid, values, sizes, shapes = step(iterator, tf.constant(limit, tf.int32))
        chunk = Chunk(valid.numpy(), {n: v.numpy() for n, v in values.items()}, sizes.numpy(),
                      {n: s.numpy() for n, s in shapes.items()}, _specs(ds), RANKS, per_round, merge)
        got = list(chunk.batches())
        calls.append((int(rounds), got))
        if int(rounds) < min(limit, max_rounds):
            return calls


def _check_batches(got, ds):
    expected = list(ds.as_numpy_iterator())
    assert len(got) == len(expected)
    for batch, want in zip(got, expected):
        assert batch["double"].shape == want.shape  # each batch keeps its own padded length
        np.testing.assert_array_equal(batch["double"], want * 2)
        np.testing.assert_allclose(batch["row_sum"], want.sum(1), rtol=1e-6)
        assert batch[NUM_SAMPLES] == len(want) and np.ndim(batch[NUM_SAMPLES]) == 0


@pytest.mark.parametrize("limit", [1, 4, 100])
def test_single_mode_keeps_padded_batches_apart(limit):
    ds = _padded()
    step = make_step(_replica_fn, _specs(ds), ds.element_spec, None, "single", max_rounds=64)
    calls = _run_all(step, ds, limit)
    assert [r for r, _ in calls][:-1] == [limit] * (len(calls) - 1)  # full calls, then a short one
    assert sum(r for r, _ in calls) == 6
    _check_batches([b for _, got in calls for b in got], ds)
    assert step.experimental_get_tracing_count() == 1  # no retrace per length or per limit


def test_max_rounds_caps_a_call():
    ds = _padded()
    step = make_step(_replica_fn, _specs(ds), ds.element_spec, None, "single", max_rounds=4)
    assert [r for r, _ in _run_all(step, ds, 100, max_rounds=4)] == [4, 2]


def test_one_device_strategy_whole_batches():
    ds = _padded(3)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    step = make_step(_replica_fn, _specs(ds), ds.element_spec, strategy, "whole", max_rounds=64)
    calls = _run_all(step, ds, 3)
    _check_batches([b for _, got in calls for b in got], ds)


def test_one_replica_mirrored_split():
    ds = _padded(4)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    step = make_step(_replica_fn, _specs(ds), ds.element_spec, strategy, "split", max_rounds=64)
    calls = _run_all(step, ds, 64, per_round=1, merge=True)
    _check_batches([b for _, got in calls for b in got], ds)


def test_unknown_mode():
    ds = _padded()
    with pytest.raises(ValueError, match="'halves'"):
        make_step(_replica_fn, _specs(ds), ds.element_spec, None, "halves", max_rounds=4)
