"""keras-tuner's search, with callbacks passed the way its getting-started
guide passes them: every trial gets deep copies, and each trial reports its
own numbers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import (
    ClassificationError,
    InferenceRunner,
    JSONWriter,
    MinSaver,
    ModelSaver,
    Monitors,
    PeriodicTrigger,
    ScalarStats,
)

kt = pytest.importorskip("keras_tuner")


def _data(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, size=n).astype("int32")


def _build(hp):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(hp.Choice("units", [4, 8, 16]),
                                                                     activation="relu"),
                              keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(hp.Choice("lr", [0.01, 0.1, 0.3])),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def _last(trial, key):
    """The value of ``key`` the tuner recorded for the trial (its best epoch's)."""
    return float(np.mean(trial.metrics.get_history(key)[-1].value))


def test_each_trial_reports_its_own_numbers(tmp_path):
    x, y = _data(96, seed=0)
    xv, yv = _data(45, seed=1)
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(16)
    runner = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()], verbose=False)
    callbacks = [
        runner,
        Monitors(JSONWriter(tmp_path / "logs", overwrite=True)),
        ModelSaver(tmp_path / "ckpt"),
        MinSaver("validation_loss"),
        PeriodicTrigger(InferenceRunner(val, ScalarStats("loss", prefix="every1"), verbose=False),
                        every_k_epochs=1),
    ]
    keras.utils.set_random_seed(0)
    tuner = kt.RandomSearch(_build, objective=kt.Objective("validation_loss", direction="min"),
                            max_trials=3, directory=tmp_path / "tuner", overwrite=True, seed=1)
    tuner.search(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(xv, yv), callbacks=callbacks)

    trials = tuner.oracle.get_best_trials(num_trials=3)
    assert len(trials) == 3
    best = [t.metrics.get_best_value("validation_loss") for t in trials]
    assert len(set(np.round(best, 6))) == 3  # each trial its own numbers
    assert best == sorted(best)
    for trial in trials:
        # Keras's own validation of the same set, in the same epochs.
        np.testing.assert_allclose(_last(trial, "validation_loss"),
                                   _last(trial, "val_loss"), rtol=1e-5)
        np.testing.assert_allclose(_last(trial, "validation_error"),
                                   1 - _last(trial, "val_accuracy"), atol=1e-6)
        # The weights the tuner kept (its best epoch) give that number again.
        model = tuner.load_model(trial)
        loss, _ = model.evaluate(xv, yv, batch_size=16, verbose=0)
        np.testing.assert_allclose(trial.metrics.get_best_value("validation_loss"), loss, rtol=1e-5)
        # The wrapped runner's copy validated this trial's model too.
        np.testing.assert_allclose(_last(trial, "every1_loss"),
                                   _last(trial, "validation_loss"), rtol=1e-6)
    # The callbacks handed to search were copied, never run themselves.
    assert runner.last_results == {} and runner.model is None
