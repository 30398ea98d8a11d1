"""The same weights give the same numbers on every backend: one
``.weights.h5`` file written here (TensorFlow) is loaded in three fresh
processes, under TensorFlow, JAX and PyTorch, and validated by the same
``InferenceRunner`` code on the same data: the compiled loss (sample
weights, BatchNorm's moving statistics) to float32 round-off, every count
(samples, batches, wrong predictions) identical, and all equal to numpy over
the whole set computed here from the file's weights."""

from __future__ import annotations

import concurrent.futures
import json

import keras
import numpy as np
import pytest

from conftest import run_python

pytestmark = pytest.mark.tensorflow_only("starts one fresh process per backend (runs once, in the TensorFlow session)")

BACKENDS = ("tensorflow", "jax", "torch")
N, BATCH = 203, 24  # 9 batches, the last of 11

ARCHITECTURE = '''
import keras

def build():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
'''

RUN = ARCHITECTURE + '''
import json, sys
import numpy as np
import tensorflow as tf
from infer_callbacks import ClassificationError, InferenceRunner, Inferencer, ScalarStats

class Counts(Inferencer):
    """Integer counts: batches, samples, wrong top-1 predictions."""
    def _get_fetches(self):
        return ["wrong-top1"]
    def _before_inference(self):
        self.batches = self.samples = self.wrong = 0
    def _on_fetches(self, results):
        wrong = np.asarray(results[0])
        self.batches += 1
        self.samples += len(wrong)
        self.wrong += int(wrong.sum())
    def _after_inference(self):
        return {"batches": self.batches, "samples": self.samples, "wrong": self.wrong}

data = np.load(DATA)
model = build()
model.load_weights(WEIGHTS)
val = tf.data.Dataset.from_tensor_slices((data["x"], data["y"], data["w"])).batch(BATCH)
runner = InferenceRunner(val, [ScalarStats("loss"), ClassificationError(), Counts()], verbose=False)
runner.set_model(model)
results = runner.trigger()
arrays = InferenceRunner((data["x"], data["y"]), ScalarStats("loss", prefix="arrays"), batch_size=BATCH,
                         verbose=False)
arrays.set_model(model)
results.update(arrays.trigger())
print("RESULTS " + json.dumps({"backend": keras.backend.backend(), **results}))
'''


def _numpy_reference(weights, x, y, w):
    """The whole set at once in float64: Keras's weighted loss (Σ w·l / N),
    the unweighted one, the weighted top-1 error and the wrong count."""
    k1, b1, gamma, beta, mean, var, k2, b2 = (np.asarray(a, "float64") for a in weights)
    h = np.maximum(x @ k1 + b1, 0)
    h = (h - mean) / np.sqrt(var + 1e-3) * gamma + beta
    logits = h @ k2 + b2
    shifted = logits - logits.max(-1, keepdims=True)
    loss = -(shifted - np.log(np.exp(shifted).sum(-1, keepdims=True)))[np.arange(len(y)), y]
    wrong = (logits.argmax(-1) != y).astype("float64")
    return {"validation_loss": float((w * loss).sum() / len(y)), "arrays_loss": float(loss.mean()),
            "validation_error": float((w * wrong).sum() / w.sum()), "wrong": int(wrong.sum())}


def test_one_weights_file_gives_the_same_numbers_on_tensorflow_jax_and_torch(tmp_path):
    rng = np.random.default_rng(29)
    x = rng.normal(size=(N, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + 2 * (x[:, 1] > 0.3).astype("int32")
    w = rng.uniform(0.2, 2.0, size=N).astype("float32")
    scope: dict = {}
    exec(ARCHITECTURE, scope)
    keras.utils.set_random_seed(29)
    model = scope["build"]()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)  # BatchNorm's moving statistics move off 0 and 1
    weights_path, data_path = str(tmp_path / "model.weights.h5"), str(tmp_path / "data.npz")
    model.save_weights(weights_path)
    np.savez(data_path, x=x, y=y, w=w)
    code = f"DATA, WEIGHTS, BATCH = {data_path!r}, {weights_path!r}, {BATCH}\n" + RUN

    def run(backend):
        out = run_python(code, env={"KERAS_BACKEND": backend}, timeout=400)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULTS ")]
        assert out.returncode == 0 and lines, f"{backend}:\n{out.stdout[-2000:]}\n{out.stderr[-5000:]}"
        return json.loads(lines[-1][len("RESULTS "):])

    with concurrent.futures.ThreadPoolExecutor(len(BACKENDS)) as pool:  # three processes side by side
        results = dict(zip(BACKENDS, pool.map(run, BACKENDS)))
    reference = _numpy_reference(model.get_weights(), x.astype("float64"), y, w.astype("float64"))
    for backend, got in results.items():
        assert got["backend"] == backend
        assert (got["batches"], got["samples"], got["wrong"]) == (9, N, reference["wrong"]), (backend, got)
        for key in ("validation_loss", "arrays_loss", "validation_error"):
            np.testing.assert_allclose(got[key], reference[key], rtol=1e-5, err_msg=f"{backend} {key}")
            np.testing.assert_allclose(got[key], results["tensorflow"][key], rtol=2e-6,
                                       err_msg=f"{backend} {key} against TensorFlow")
