"""feed: a Python input reaches the step through a TensorFlow queue filled
by producer threads; every run ends with end markers, errors come back with
the batch they happened at, and closing a run leaves no thread waiting."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_step_threads_end
from helpers.models import classifier
from infer_callbacks import InferenceRunner, ScalarStats
from infer_callbacks.data.queue_feed import Feed

SIGNATURE = (tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None,), tf.string))


def _batches(n=5):
    return [(np.full((i + 1, 3), i, "float32"), np.array([f"b{i}"] * (i + 1), dtype=object)) for i in range(n)]


def _drain(feed):
    """Dequeue eagerly, as the step does, until the end marker."""
    types = [tf.float32, tf.string, tf.bool]
    got = []
    while True:
        x, s, more = tf.raw_ops.QueueDequeueV2(handle=feed.source(), component_types=types)
        if not bool(more):
            return got, (x.shape, s.shape)
        got.append((x.numpy(), s.numpy()))


def test_batches_arrive_in_order_then_the_end_marker_twice():
    batches = _batches()
    feed = Feed(lambda: iter(batches), SIGNATURE, capacity=2)
    got, marker = _drain(feed)
    assert len(got) == len(batches)
    for (x, s), (ex, es) in zip(got, batches):
        np.testing.assert_array_equal(x, ex)
        assert [v.decode() for v in s] == list(es)
    assert marker == ((0, 3), (0,))
    types = [tf.float32, tf.string, tf.bool]
    # a step reading several batches a round reads one more marker
    assert not bool(tf.raw_ops.QueueDequeueV2(handle=feed.source(), component_types=types)[2])
    feed.check()  # no error
    feed.close()
    assert_step_threads_end()


def test_an_iterator_error_ends_the_run_and_is_raised_with_its_batch():
    def failing():
        yield from _batches(2)
        raise OSError("disk went away")

    feed = Feed(failing, SIGNATURE, description="my flow")
    got, _ = _drain(feed)
    assert len(got) == 2
    with pytest.raises(OSError, match="disk went away") as info:
        feed.check()
    assert any("validation batch 3 of my flow" in n for n in info.value.__notes__)
    feed.check()  # raised once
    feed.close()


def test_a_batch_the_queue_refuses_ends_the_run_and_is_raised():
    # (InputSource checks batches first; the feed still must not leave the step waiting)
    bad = _batches(3)
    bad[1] = (np.full((2, 3), "x"), bad[1][1])  # text where numbers go
    feed = Feed(lambda: iter(bad), SIGNATURE)
    got, _ = _drain(feed)  # ends instead of waiting for a batch that never comes
    assert len(got) == 1
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)) as info:
        feed.check()
    assert any("validation batch 2" in n for n in info.value.__notes__)
    feed.close()
    assert_step_threads_end()


def test_close_releases_a_blocked_producer_and_a_waiting_reader():
    endless = iter(lambda: _batches(1)[0], None)  # never ends
    feed = Feed(lambda: endless, SIGNATURE, capacity=1)
    types = [tf.float32, tf.string, tf.bool]
    tf.raw_ops.QueueDequeueV2(handle=feed.source(), component_types=types)  # the producer is running
    feed.close()
    assert_step_threads_end()  # both feed threads end
    # a reader of a closed, drained queue fails instead of waiting forever
    errors = []

    def read():
        try:
            while True:
                tf.raw_ops.QueueDequeueV2(handle=feed.source(), component_types=types)
        except tf.errors.OutOfRangeError as e:
            errors.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive() and errors


def test_runner_on_a_python_input_equals_the_same_data_as_a_dataset():
    model = classifier(optimizer="rmsprop")  # compile's default optimizer
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(37, 4)).astype("float32"), rng.integers(0, 3, 37).astype("int32")
    flow = [(x[i:i + 5], y[i:i + 5]) for i in range(0, 37, 5)]
    runner = InferenceRunner(flow, ScalarStats("loss"), verbose=False)
    runner.set_model(model)
    expected = model.evaluate(x, y, batch_size=37, verbose=0)
    for _ in range(3):  # each run starts from the first batch
        assert runner.trigger()["validation_loss"] == pytest.approx(expected, rel=1e-5)
        assert runner.num_samples_last_run == 37
    assert_step_threads_end()
