"""report.Report, what a runner hands Monitors (``pop_reports()``): the
1-based epoch and the optimizer step of the weights measured, the scalars
that went into ``logs`` and the monitor-only scalars, compared with Keras's
History and optimizer in a small ``fit``."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from helpers.runner import batched, data, dense_classifier  # noqa: F401 (data: a fixture)
from infer_callbacks import Inferencer, InferenceRunner, ScalarStats
from infer_callbacks.fit.report import Report


class Counting(Inferencer):
    """One scalar for ``logs`` (batches seen) and one for the monitors only
    (samples seen)."""

    def _get_fetches(self):
        return ["label"]

    def _before_inference(self):
        self.batches = self.samples = 0

    def _on_fetches(self, outputs):
        self.batches += 1
        self.samples += len(outputs[0])

    def _after_inference(self):
        return {"count_batches": self.batches}

    def monitor_only_results(self):
        return {"count_samples": self.samples}


class Steps(keras.callbacks.Callback):
    """The optimizer's step at each epoch end, as Keras counts it."""

    def __init__(self):
        super().__init__()
        self.at_epoch_end = []

    def on_epoch_end(self, epoch, logs=None):
        self.at_epoch_end.append((epoch + 1, int(self.model.optimizer.iterations.numpy())))


def test_report_carries_epoch_step_logs_and_monitor_only_scalars():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 5)).astype("float32"), rng.integers(0, 3, 40).astype("int32")
    xv, yv = rng.normal(size=(21, 5)).astype("float32"), rng.integers(0, 3, 21).astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(8)  # 8, 8, 5
    runner = InferenceRunner(val, [ScalarStats("loss"), Counting()], verbose=False)
    steps = Steps()
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False, callbacks=[runner, steps])

    reports = runner.pop_reports()
    assert all(isinstance(r, Report) for r in reports)
    assert [(r.epoch_num, r.global_step) for r in reports] == steps.at_epoch_end == [(1, 3), (2, 6), (3, 9)]
    assert [r.epoch_num for r in reports] == [e + 1 for e in history.epoch]
    for i, r in enumerate(reports):
        assert r.scalars == {k: history.history[k][i] for k in ("validation_loss", "count_batches")}
        assert r.monitor_scalars == {"count_samples": 21} and r.images == {}
    assert "count_samples" not in history.history  # monitor-only: never in logs
    assert [r.scalars["count_batches"] for r in reports] == [3, 3, 3]
    # The last report's loss is Keras's own on the final weights.
    np.testing.assert_allclose(reports[-1].scalars["validation_loss"], model.evaluate(val, verbose=0), rtol=1e-5)
    assert runner.pop_reports() == []


def test_reports_for_monitors(data):
    (x, y), (xv, yv) = data
    model = dense_classifier()
    runner = InferenceRunner(batched(xv, yv, 16), [ScalarStats("loss")])
    history = model.fit(batched(x, y, 64), epochs=2, verbose=0, callbacks=[runner])
    reports = runner.pop_reports()
    assert [(r.epoch_num, r.global_step) for r in reports] == [(1, 4), (2, 8)]
    assert [r.scalars["validation_loss"] for r in reports] == history.history["validation_loss"]
    assert runner.pop_reports() == []
