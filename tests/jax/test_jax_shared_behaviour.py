"""The backend-neutral behaviour on Keras's JAX backend, with the default
Keras tower (on keras.ops): results in every callback's on_epoch_end
whatever the order, on_test_* around each run, masks, reuse across fits and models, schedules, monitors and
bad input, each against Keras's own evaluate on JAX. Runs in a fresh JAX
process; this one stays on TensorFlow."""

from __future__ import annotations

from conftest import run_python
import pytest

pytestmark = pytest.mark.tensorflow_only("starts its own KERAS_BACKEND=jax processes")

CODE = r'''
import json, os, tempfile
import numpy as np, keras, tensorflow as tf
assert keras.backend.backend() == "jax"
from infer_callbacks import (InferenceRunner, ScalarStats, ClassificationError, PeriodicTrigger, Monitors,
                             JSONWriter)

rng = np.random.default_rng(0)
x = rng.normal(size=(120, 6)).astype("float32")
y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0.5).astype("int32")
val = tf.data.Dataset.from_tensor_slices((x[80:], y[80:])).batch(16)   # 40: a partial last batch

def classifier():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    m.compile(optimizer=keras.optimizers.SGD(0.1),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return m

class Seen(keras.callbacks.Callback):        # placed before the runner
    def __init__(self):
        super().__init__(); self.logs, self.tests = [], 0
    def on_test_begin(self, logs=None):
        self.tests += 1
    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))

# 1. any order, on_test_*, exact numbers, reuse of one runner across fits and models
runner = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()], verbose=False)
for model in (classifier(), classifier()):
    seen = Seen()
    model.fit(x[:80], y[:80], batch_size=16, epochs=2, verbose=0, callbacks=[seen, runner])
    loss, acc = model.evaluate(val, verbose=0)
    assert seen.tests == 2 and all("validation_loss" in l for l in seen.logs), seen.logs
    assert np.isclose(seen.logs[-1]["validation_loss"], loss, rtol=1e-5), (seen.logs[-1], loss)
    assert np.isclose(seen.logs[-1]["validation_error"], 1 - acc, atol=1e-6)
print("ORDER-OK")

# 3. a masked sequence tagger: the mean over the valid tokens of the whole set
seqs = rng.integers(1, 20, size=(30, 7)).astype("int32")
seqs[::3, 4:] = 0                                          # padding
tags = rng.integers(0, 3, size=(30, 7)).astype("int32")
keras.utils.set_random_seed(0)
tagger = keras.Sequential([keras.Input((7,), dtype="int32"), keras.layers.Embedding(20, 8, mask_zero=True),
                           keras.layers.Dense(3)])
tagger.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
whole = tf.data.Dataset.from_tensor_slices((seqs, tags)).batch(30)
seq_runner = InferenceRunner(tf.data.Dataset.from_tensor_slices((seqs, tags)).batch(8), ScalarStats("loss"),
                             verbose=False)
seq_runner.set_model(tagger)
assert np.isclose(seq_runner.trigger()["validation_loss"], tagger.evaluate(whole, verbose=0), rtol=1e-5)
print("MASK-OK")

# 4. a mid-epoch schedule with Monitors: rows at their global steps
logdir = tempfile.mkdtemp()
model = classifier()
model.fit(x[:80], y[:80], batch_size=10, epochs=2, verbose=0, callbacks=[
    PeriodicTrigger(InferenceRunner(val, ScalarStats("loss"), verbose=False), every_k_steps=4),
    Monitors([JSONWriter(logdir)])])
rows = json.load(open(os.path.join(logdir, "stats.json")))
assert [r["global_step"] for r in rows if "validation_loss" in r] == [4, 8, 12, 16], rows
print("SCHEDULE-OK")

# 5. bad input: an unknown fetch name fails before the first training step, listing the names
try:
    classifier().fit(x[:80], y[:80], epochs=1, verbose=0,
                     callbacks=[InferenceRunner(val, ScalarStats("no_such_tensor"), verbose=False)])
except ValueError as e:
    assert "no_such_tensor" in str(e) and "loss" in str(e), e
    print("ERROR-OK")
'''


def test_shared_behaviour_on_jax_with_the_default_tower():
    out = run_python(CODE, env={"KERAS_BACKEND": "jax"}, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    for step in ("ORDER", "MASK", "SCHEDULE", "ERROR"):
        assert f"{step}-OK" in out.stdout, out.stdout[-2000:]
