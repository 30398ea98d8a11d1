"""No swap of EMA weights before the optimizer's first EMA update: a run at
global step 0 (PeriodicTrigger(before_train=True)) beside Keras's
SwapEMAWeights measures the model's own weights (what Keras's first update
copies into the average), synchronously and asynchronously, on TensorFlow
(where SwapEMAWeights raised: no optimizer built yet) and JAX (where it
swapped in zeros). Later runs still get the swap."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from infer_callbacks import InferenceRunner, PeriodicTrigger, ScalarStats
from infer_callbacks.runner.ema import ema_pending

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 4)).astype("float32")
Y = rng.integers(0, 3, 64)


def _model(use_ema=True):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, use_ema=use_ema),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class Hooks(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_test_begin(self, logs=None):
        self.steps.append(int(np.asarray(self.model.optimizer.iterations)))


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_run_at_step_0_measures_the_models_weights(asynchronous):
    model = _model()
    at_start = model.evaluate(X, Y, verbose=0)
    runner = InferenceRunner((X, Y), ScalarStats("loss"), batch_size=16, verbose=False, asynchronous=asynchronous)
    hooks = Hooks()
    model.fit(X, Y, batch_size=16, epochs=2, verbose=0, callbacks=[
        keras.callbacks.SwapEMAWeights(), hooks, PeriodicTrigger(runner, before_train=True, every_k_epochs=1)])
    reports = {r.global_step: r.scalars["validation_loss"] for r in runner.pop_reports()}
    assert reports[0] == pytest.approx(at_start, rel=1e-5)  # not a model of zeros, not an error
    assert 0 not in hooks.steps and hooks.steps  # no on_test_begin at step 0; later runs swap as before


def test_ema_pending():
    model = _model()
    assert ema_pending(model)
    model.fit(X, Y, batch_size=64, epochs=1, verbose=0)
    assert not ema_pending(model)
    assert not ema_pending(_model(use_ema=False)) and not ema_pending(object())
