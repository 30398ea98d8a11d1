"""The fast path (many batches per tf.function call, pipelined host
dispatch) gives what the one-batch-per-call path gives, batch by batch."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import BinaryClassificationStats, ClassificationError, Inferencer, InferenceRunner, ScalarStats


class Record(Inferencer):
    """A custom inferencer that keeps every batch it is given."""

    def _before_inference(self):
        self.batches = []

    def _get_fetches(self):
        return ["label", "loss", "output", "cost"]

    def _on_fetches(self, results):
        self.batches.append([np.array(r, copy=True) for r in results])

    def _after_inference(self):
        return {"batches_seen": len(self.batches)}


def _model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(7, activation="tanh"), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _tower(model):
    def tower(x, label):
        logits = model(x, training=False)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits)
        return {"loss": loss, "output": logits, "label": label, "cost": tf.reduce_mean(loss),
                "pred": tf.cast(tf.argmax(logits, 1) == 0, tf.int32), "positive": tf.cast(label == 0, tf.int32),
                "wrong-top1": tf.cast(tf.argmax(logits, 1, output_type=tf.int32) != label, tf.float32)}
    return tower


@pytest.mark.parametrize("n, batch", [(97, 10), (64, 8), (5, 16), (131, 1)])
def test_fast_path_equals_one_batch_per_call(n, batch):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = rng.integers(0, 4, size=n).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    model = _model()
    outcomes = []
    for spe, pipeline in [(1, False), (3, True), (64, True), (1000, False)]:
        infs = [Record(), ScalarStats(["loss", "cost"]), ClassificationError(),
                BinaryClassificationStats("pred", "positive")]
        runner = InferenceRunner(ds, infs, tower_func=_tower(model), steps_per_execution=spe, pipeline=pipeline)
        runner.set_model(model)
        results = runner.trigger()
        outcomes.append((results, infs[0].batches))
    base_results, base_batches = outcomes[0]
    assert base_results["batches_seen"] == -(-n // batch)
    for results, batches in outcomes[1:]:
        assert results == base_results  # bit-identical
        assert len(batches) == len(base_batches)
        for got, want in zip(batches, base_batches):
            for g, w in zip(got, want):
                assert g.shape == w.shape and g.dtype == w.dtype
                np.testing.assert_array_equal(g, w)


def test_inferencer_error_names_it_and_stops_the_worker():
    x = np.zeros((50, 5), "float32")
    y = np.zeros(50, "int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)

    class Boom(Inferencer):
        def _get_fetches(self):
            return ["label"]

        def _on_fetches(self, results):
            raise ZeroDivisionError("boom")

    model = _model()
    runner = InferenceRunner(ds, [Boom()], tower_func=_tower(model), steps_per_execution=2)
    runner.set_model(model)
    before = threading.active_count()
    with pytest.raises(ZeroDivisionError) as info:
        runner.trigger()
    assert any("Boom" in note and "validation batch 1" in note for note in info.value.__notes__)
    assert threading.active_count() == before
    assert not any(t.name == "infer_callbacks-step" for t in threading.enumerate())


def test_input_error_names_the_batch():
    def flow():
        for i in range(6):
            if i == 4:
                raise OSError("disk went away")
            yield np.full((3, 5), i, "float32"), np.zeros(3, "int32")

    model = _model()
    runner = InferenceRunner(flow, [ScalarStats("loss")], tower_func=_tower(model), steps_per_execution=8)
    runner.set_model(model)
    with pytest.raises(Exception, match="disk went away") as info:
        runner.trigger()
    assert any("validation batch 5" in note for note in getattr(info.value, "__notes__", []))
    assert not any(t.name == "infer_callbacks-step" for t in threading.enumerate())


def test_slow_batches_get_short_calls_so_progress_moves():
    # steps_per_execution is an upper bound: a call runs about a quarter of
    # a second of batches, so a slow input (>= 50 ms per batch) is never run
    # in one long call and the progress bar advances during the run.
    import time

    class Slow:
        def __iter__(self):
            for i in range(10):
                time.sleep(0.05)
                yield np.full((2, 5), i, "float32"), np.zeros(2, "int32")

    model = _model()
    runner = InferenceRunner(Slow(), [ScalarStats("loss")], tower_func=_tower(model), steps_per_execution=64)
    runner.set_model(model)
    runner.setup()
    calls = []
    step = runner._step

    def counting(iterator, limit):
        calls.append(int(limit))
        return step(iterator, limit)

    runner._step = counting
    runner.trigger()
    # 1, 2, 4, ...: at least doubling from one batch, never one long call
    assert calls[0] == 1 and len(calls) >= 4 and max(calls) <= 8, calls
    assert all(b <= 2 * a for a, b in zip(calls, calls[1:])), calls
    assert runner.num_samples_last_run == 20
    assert step.experimental_get_tracing_count() == 1  # the limit is a tensor: no retrace
