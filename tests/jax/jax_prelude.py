"""Code every JAX test runs first in its fresh ``KERAS_BACKEND=jax`` process:
data, a small classifier (BatchNorm included: non-trainable state), and a
tower written with ``keras.ops`` that returns Keras's loss with exact pairs
and sample weights (the default Keras tower is ported to keras.ops on another
branch; until then the JAX tests pass this one)."""

PRELUDE = '''
import os
os.environ["KERAS_BACKEND"] = "jax"
import json
import numpy as np
import keras
import tensorflow as tf
from keras import ops
assert keras.backend.backend() == "jax"
from infer_callbacks import (InferenceRunner, DataParallelInferenceRunner, Inferencer, ScalarStats,
                             ClassificationError)

def data(n=203, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = rng.integers(0, 4, size=n).astype("int32")
    w = rng.uniform(0.2, 2.0, size=n).astype("float32")
    return x, y, w

def make_model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(4)])
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=["accuracy"])
    return model

def ops_tower(model):
    """Per example: Keras's loss and wrong-top1, with exact pairs weighted as evaluate."""
    per_example = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    def tower(x, y, sample_weight=None):
        logits = model(x, training=False)
        loss = per_example(y, logits)
        wrong = ops.cast(ops.not_equal(ops.argmax(logits, -1), ops.cast(y, "int32")), "float32")
        w = ops.ones_like(loss) if sample_weight is None else ops.cast(sample_weight, "float32")
        out = {"logits": logits, "loss": loss, "loss#num": loss * w, "loss#den": ops.ones_like(loss),
               "wrong-top1": wrong, "wrong-top1#num": wrong * w, "wrong-top1#den": w,
               "batch_mean": ops.mean(loss)}
        if sample_weight is not None:
            out["#sample_weight"] = w
        return out
    return tower

def numpy_reference(model, x, y, w=None):
    logits = np.asarray(model.predict(x, batch_size=len(x), verbose=0), np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    loss = -logp[np.arange(len(y)), y]
    wrong = (logits.argmax(-1) != y).astype(np.float64)
    w = np.ones(len(y)) if w is None else w.astype(np.float64)
    return {"validation_loss": float((loss * w).sum() / len(y)),
            "validation_error": float((wrong * w).sum() / w.sum())}

class Batches(Inferencer):
    """Every batch as it arrives (per-batch values, in order)."""
    def __init__(self, name="logits"):
        self.name = name
    def _get_fetches(self):
        return [self.name]
    def _before_inference(self):
        self.seen = []
    def _on_fetches(self, results):
        self.seen.append(np.array(results[0]))
    def _after_inference(self):
        return {}

def close(a, b, rtol=1e-5):
    assert set(a) <= set(b) or set(b) <= set(a), (a, b)
    for k in set(a) & set(b):
        assert abs(a[k] - b[k]) <= rtol * max(1.0, abs(b[k])), (k, a[k], b[k])
'''
