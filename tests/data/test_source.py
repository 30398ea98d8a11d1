"""InputSource: what a user passes becomes a sized, re-iterable, prefetched
tf.data.Dataset."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks.data.source import InputSource


def _batches(n=10, batch=4):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def _collect(source: InputSource):
    return [tuple(t.numpy() for t in tf.nest.flatten(b)) for b in source.dataset]


class Flow:
    def __init__(self, batches, with_len=True):
        self.batches, self.with_len, self.resets = batches, with_len, 0

    def reset_state(self):
        self.resets += 1

    def __len__(self):
        if not self.with_len:
            raise NotImplementedError
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def test_list_of_tuples_keeps_values_order_and_size():
    batches = _batches()
    source = InputSource(batches)
    assert source.size == 3
    for _ in range(2):  # re-iterable: each pass starts from the first batch
        got = _collect(source)
        assert len(got) == 3
        for (gx, gy), (x, y) in zip(got, batches):
            np.testing.assert_array_equal(gx, x)
            np.testing.assert_array_equal(gy, y)
    assert source.dataset.element_spec == (tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None,), tf.int64))


def test_dataflow_reset_once_and_unknown_len():
    flow = Flow(_batches(), with_len=False)
    source = InputSource(flow)
    assert source.size is None
    _collect(source)
    _collect(source)
    assert flow.resets == 1


def test_dict_batches_and_function_input():
    def make():
        return ({"x": b[0], "label": b[1]} for b in _batches())

    source = InputSource(make)
    assert source.size is None
    got = list(source.dataset)
    assert [int(b["label"].shape[0]) for b in got] == [4, 4, 2]


def test_dataset_cardinality_is_the_size():
    ds = tf.data.Dataset.range(10).batch(4)
    assert InputSource(ds).size == 3
    assert InputSource(ds.filter(lambda b: True)).size is None  # unknown cardinality


def test_batch_counter_names_the_failing_batch():
    batches = _batches()
    batches[2] = (batches[2][0].astype(np.float64), batches[2][1])
    source = InputSource(batches)
    with pytest.raises(Exception, match=r"batch 3 .* does not match the first batch"):
        _collect(source)
    assert source.failed_batch == 3


def test_one_shot_and_non_iterables_refused():
    with pytest.raises(TypeError, match="one-shot iterator"):
        InputSource(iter(_batches()))
    with pytest.raises(TypeError, match="from_tensor_slices"):
        InputSource(np.zeros((4, 3)))
    with pytest.raises(TypeError, match="must be a tf.data.Dataset"):
        InputSource(3.5)
    with pytest.raises(TypeError, match="pass the dataset itself"):
        InputSource(lambda: tf.data.Dataset.range(3))  # a function must return batches


def test_tensorpack_queue_and_feed_input_wrap_a_dataflow():
    """tensorpack code passes QueueInput(df) / FeedInput(df); they feed the
    DataFlow itself (reset once, same batches) and refuse what is not one."""
    from infer_callbacks import FeedInput, QueueInput

    for wrapper in (QueueInput, FeedInput):
        flow = Flow(_batches())
        source = InputSource(wrapper(flow))
        got = _collect(source)
        assert source.size == 3 and flow.resets == 1
        for (gx, gy), (x, y) in zip(got, _batches()):
            np.testing.assert_array_equal(gx, x)
            np.testing.assert_array_equal(gy, y)
        _collect(source)
        assert flow.resets == 1
        with pytest.raises(TypeError, match=wrapper.__name__):
            wrapper(np.zeros(3))


def test_runner_takes_queue_input_end_to_end():
    import keras

    from infer_callbacks import InferenceRunner, QueueInput, ScalarStats

    x, y = np.random.default_rng(0).normal(size=(10, 3)).astype("float32"), np.zeros((10, 1), "float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    runner = InferenceRunner(QueueInput(Flow([(x[:4], y[:4]), (x[4:], y[4:])])), ScalarStats("loss"))
    runner.set_model(model)
    expected = np.mean((model.predict(x, verbose=0) - y) ** 2)
    assert runner.trigger()["validation_loss"] == pytest.approx(expected, rel=1e-5)
