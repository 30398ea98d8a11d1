"""Many fits in one long process: the callbacks of each fit meet through
their own CallbackList, whatever else is alive (earlier fits' lists, other
models, Python-input threads, runs that ended in an error or Ctrl-C).

Runs in a fresh process, so a crash of the interpreter is a test failure
with its output, not a lost test session. Timing is not asserted here: the
cost of starting a fit as the process grows is measured by
``benchmarks/bench_fit_start.py``."""

from __future__ import annotations

import pytest

from conftest import run_python

STRESS = r"""
import signal, warnings
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np, keras, tensorflow as tf
from infer_callbacks import (InferenceRunner, Inferencer, ScalarStats, ClassificationError, Monitors,
                             ScalarPrinter, JSONWriter, ModelSaver, MinSaver, PeriodicTrigger)

# A callback that cannot find its run warns: here that fails the fit.
warnings.filterwarnings("error", message=".*was not given its model by a keras.callbacks.CallbackList")
rng = np.random.default_rng(0)
x = rng.normal(size=(48, 5)).astype("float32")
y = rng.integers(0, 3, size=48).astype("int32")
xv, yv = x[:20], y[:20]


class DataFlow:  # tensorpack-style Python input: reaches the step through feeder threads
    def __len__(self):
        return 3

    def __iter__(self):
        for i in range(0, 20, 8):
            yield xv[i:i + 8], yv[i:i + 8]


class Boom(Inferencer):
    def __init__(self, exc):
        self.exc = exc

    def _get_fetches(self):
        return ["loss"]

    def _on_fetches(self, results):
        raise self.exc


class Seen(keras.callbacks.Callback):  # placed before the runners
    def __init__(self):
        super().__init__()
        self.epochs, self.tests = [], 0

    def on_test_begin(self, logs=None):
        self.tests += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


def make_model(ema):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.05, use_ema=ema),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


alive = []  # several models (and their lists' callbacks) alive at once
fits = 0
for i in range(54):
    kind = i % 6
    ema = kind == 3
    model = make_model(ema)
    seen = Seen()
    val = DataFlow() if i % 2 else tf.data.Dataset.from_tensor_slices((xv, yv)).batch(8)
    runner = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()], verbose=False)
    other = InferenceRunner([(xv, yv)], ScalarStats("loss", prefix="second"), verbose=False)
    monitors = Monitors([ScalarPrinter(), JSONWriter(f"{TMP}/logs{i}")])
    callbacks = [seen]
    if kind == 0:
        callbacks += [runner, monitors]
    elif kind == 1:
        callbacks += [ModelSaver(f"{TMP}/ckpt{i}"), MinSaver("validation_loss"), monitors, runner]
    elif kind == 2:
        callbacks += [monitors, PeriodicTrigger(runner, every_k_epochs=1), other]
    elif kind == 3:
        callbacks += [keras.callbacks.SwapEMAWeights(), runner, monitors]
    elif kind == 4:
        callbacks += [monitors, InferenceRunner(val, [Boom(ValueError("inferencer failed"))], verbose=False)]
    else:
        callbacks += [InferenceRunner(val, [Boom(KeyboardInterrupt())], verbose=False), monitors]
    try:
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks)
    except ValueError as e:
        assert kind == 4 and "inferencer failed" in str(e), (i, e)
    except KeyboardInterrupt:
        assert kind == 5, i
    else:
        assert kind < 4, i
        # Keras's own evaluation of the final weights (the EMA weights, swapped
        # in around the run by SwapEMAWeights, for the EMA fits).
        expected = model.evaluate(tf.data.Dataset.from_tensor_slices((xv, yv)).batch(8), verbose=0,
                                  callbacks=[keras.callbacks.SwapEMAWeights()] if ema else None)
        assert len(seen.epochs) == 2, (i, seen.epochs)
        for logs in seen.epochs:  # every callback's on_epoch_end sees the results
            assert "validation_loss" in logs and "validation_error" in logs, (i, sorted(logs))
        assert seen.tests == 2 + (2 if kind == 2 else 0), (i, seen.tests)
        assert np.isclose(seen.epochs[-1]["validation_loss"], expected, rtol=1e-5), (i, expected)
        assert monitors.get_history("validation_loss"), i
        fits += 1
    alive.append((model, callbacks))
    if len(alive) > 4:
        alive.pop(0)
print("FITS", fits)
"""


@pytest.mark.timeout(1000)  # its subprocess has 900 s: fifty fits on a loaded 2-core machine
def test_fifty_fits_in_one_process_each_sees_its_own_results(tmp_path):
    out = run_python(STRESS.replace("{TMP}", str(tmp_path)), timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    assert "FITS 36" in out.stdout, out.stdout[-2000:]
