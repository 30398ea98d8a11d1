"""The default Keras tower on Keras's JAX backend: the same code as on
TensorFlow, called eagerly and under ``jax.jit`` with the model's variables
substituted through ``keras.StatelessScope``. Its exact sums over the
batches equal JAX's own ``model.evaluate`` and numpy.

Each test runs in a fresh process (the backend is fixed at ``import keras``).
"""

from __future__ import annotations

import pytest
from conftest import run_python

pytestmark = pytest.mark.tensorflow_only("starts its own KERAS_BACKEND=jax processes")

PRELUDE = '''
import jax, keras, numpy as np
from infer_callbacks.towers.keras_tower import keras_tower_func
from infer_callbacks.towers.spec import SAMPLE_WEIGHT_KEY, exact_keys
assert keras.backend.backend() == "jax"

def batches(arrays, size):
    n = len(keras.tree.flatten(arrays)[0])
    return [keras.tree.map_structure(lambda a: a[s:s + size], arrays) for s in range(0, n, size)]

def jitted(model, *, collect_losses=True, values=None):
    """The tower in jax.jit, reading `values` (default: the model's) as Keras's stateless_call does."""
    tower = keras_tower_func(model)

    def run(tv, ntv, *batch):
        mapping = list(zip(model.trainable_variables, tv)) + list(zip(model.non_trainable_variables, ntv))
        with keras.StatelessScope(state_mapping=mapping, collect_losses=collect_losses):
            return tower(*batch)

    tv = values or [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    return lambda *b: jax.jit(run)(tv, ntv, *b)

def per_batch(fn, parts):
    return [{k: np.asarray(v) for k, v in fn(*p).items()} for p in parts]

def eager_and_jitted(model, parts, **kwargs):
    return {"eager": per_batch(keras_tower_func(model), parts), "jit": per_batch(jitted(model, **kwargs), parts)}

def exact(outs, name):
    """sum_k(sum num_k / sum den_k) over all batches, as the runner computes it."""
    num, den = (np.concatenate([o[k] for o in outs]).astype(np.float64) for k in exact_keys(name))
    num, den = num.reshape(len(num), -1).sum(0), den.reshape(len(den), -1).sum(0)
    return float(np.sum(np.where(den != 0, num / np.where(den == 0, 1, den), 0.0)))

def check(outs, name, *expected):
    for value in expected:
        np.testing.assert_allclose(exact(outs, name), value, rtol=1e-5, err_msg=name)

def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))
'''


def _run_jax(body: str) -> None:
    result = run_python(PRELUDE + body + "\nprint('OK')\n", env={"KERAS_BACKEND": "jax"}, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]


def test_classifier_with_a_partial_last_batch_and_sample_weights():
    _run_jax('''
keras.utils.set_random_seed(5)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(7)])
model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              weighted_metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")])
rng = np.random.default_rng(2)
x, y = rng.normal(size=(13, 4)).astype("float32"), rng.integers(0, 7, size=13).astype("int32")
sw = rng.uniform(0, 3, size=13).astype("float32")
expected = model.evaluate(x, y, sample_weight=sw, batch_size=5, verbose=0, return_dict=True)

kernel, bias = model.get_weights()
logits = x @ kernel + bias
ce = -log_softmax(logits)[np.arange(13), y]
wrong = logits.argmax(1) != y
rank = 1 + (logits > logits[np.arange(13), y][:, None]).sum(1)
for mode, outs in eager_and_jitted(model, batches((x, y, sw), 5)).items():  # 5, 5, 3
    assert [len(o["loss"]) for o in outs] == [5, 5, 3], mode
    check(outs, "loss", expected["loss"], np.mean(sw * ce))
    check(outs, "wrong-top1", 1 - expected["accuracy"], np.sum(sw * wrong) / np.sum(sw))
    check(outs, "wrong-top5", 1 - expected["top5"], np.sum(sw * (rank > 5)) / np.sum(sw))
    np.testing.assert_array_equal(np.concatenate([o["wrong-top1"] for o in outs]), wrong)
    np.testing.assert_allclose(np.concatenate([o["loss"] for o in outs]), sw * ce, rtol=1e-5)
    np.testing.assert_allclose(np.concatenate([o[SAMPLE_WEIGHT_KEY] for o in outs]), sw)

# the jitted tower reads the substituted values, not the variables: zero logits
zeros = [np.zeros(v.shape, "float32") for v in model.trainable_variables]
out = jitted(model, values=zeros)(x, y, sw)
np.testing.assert_allclose(np.asarray(out["loss"]), sw * np.log(7), rtol=1e-5)
np.testing.assert_allclose(model.get_weights()[0], kernel)

# one-hot labels with a sparse loss: the same clear error eagerly and at trace time
for fn in (keras_tower_func(model), jitted(model)):
    try:
        fn(x, np.eye(7, dtype="float32")[y])
    except ValueError as e:
        assert "SparseCategoricalCrossentropy" in str(e) and "look one-hot" in str(e), e
    else:
        raise AssertionError("one-hot labels with a sparse loss were accepted")

# the modules' examples run on JAX too
import doctest
import infer_callbacks.towers.keras_loss, infer_callbacks.towers.keras_shapes, infer_callbacks.towers.keras_tower
for module in (infer_callbacks.towers.keras_loss, infer_callbacks.towers.keras_shapes,
               infer_callbacks.towers.keras_tower):
    assert doctest.testmod(module).failed == 0, module
''')


def test_masked_sequence_tagger_is_keras_over_the_whole_set():
    _run_jax('''
keras.utils.set_random_seed(3)
inp = keras.Input((None,), dtype="int32")
out = keras.layers.Dense(6)(keras.layers.Embedding(9, 4, mask_zero=True)(inp))
model = keras.Model(inp, out)
model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
rng = np.random.default_rng(0)
x = rng.integers(1, 9, size=(11, 7)).astype("int32")
lengths = rng.integers(0, 8, size=11)
lengths[:2] = [0, 7]  # one fully padded row, one full row
for i, length in enumerate(lengths):
    x[i, length:] = 0
y = rng.integers(0, 6, size=(11, 7)).astype("int32")
sw = rng.uniform(0.1, 2.0, size=11).astype("float32")
# Keras 3.15 refuses [B] weights on a [B, T] loss: give evaluate the per-token version.
expected = model.evaluate(x, y, sample_weight=np.repeat(sw[:, None], 7, 1), batch_size=11, verbose=0,
                          return_dict=True)

embeddings, kernel, bias = model.get_weights()
logits = embeddings[x] @ kernel + bias
ce = -np.take_along_axis(log_softmax(logits), y[..., None], -1)[..., 0]
valid = (x != 0).astype("float64")
weight = valid * sw[:, None]
wrong = logits.argmax(-1) != y
for mode, outs in eager_and_jitted(model, batches((x, y, sw), 4)).items():  # 4, 4, 3
    check(outs, "loss", expected["loss"], np.sum(ce * weight) / valid.sum())
    check(outs, "wrong-top1", 1 - expected["acc"], np.sum(wrong * weight) / weight.sum())
    first = outs[0]
    assert first["loss"][0] == 0 and first["wrong-top1"][0] == 0, mode  # fully padded row
    np.testing.assert_allclose(first["loss"][1], np.mean(ce[1]) * sw[1], rtol=1e-5)  # full row
''')


@pytest.mark.parametrize("collect_losses", [True, False])
def test_two_outputs_with_loss_weights_dict_labels_and_regularizers(collect_losses):
    _run_jax(f'''
keras.utils.set_random_seed(4)
inp = keras.Input((3,))
a = keras.layers.Dense(2, name="out_a", kernel_regularizer=keras.regularizers.L2(0.1))(inp)
b = keras.layers.Dense(4, name="out_b", activity_regularizer=keras.regularizers.L1(0.01))(inp)
model = keras.Model(inp, [a, b])
model.compile(loss={{"out_a": "mse", "out_b": keras.losses.MeanAbsoluteError()}},
              loss_weights={{"out_a": 2.0, "out_b": 0.5}})
rng = np.random.default_rng(1)
x, ya, yb = (rng.normal(size=(10, d)).astype("float32") for d in (3, 2, 4))
labels = {{"out_a": ya, "out_b": yb}}
expected = model.evaluate(x, labels, batch_size=4, verbose=0, return_dict=True)
assert set(expected) == {{"loss", "out_a_loss", "out_b_loss"}}

(wa, ba), (wb, bb) = (model.get_layer(n).get_weights() for n in ("out_a", "out_b"))
pa, pb = x @ wa + ba, x @ wb + bb
numpy = {{"out_a_loss": np.mean((pa - ya) ** 2), "out_b_loss": np.mean(np.abs(pb - yb))}}
# L2 on out_a's kernel; L1 on out_b's output, which Keras divides by the batch size
numpy["loss"] = (2.0 * numpy["out_a_loss"] + 0.5 * numpy["out_b_loss"] + 0.1 * np.sum(wa ** 2)
                 + 0.01 * np.sum(np.abs(pb)) / len(x))
parts = batches((x, labels), 4)  # 4, 4, 2
for mode, outs in eager_and_jitted(model, parts, collect_losses={collect_losses}).items():
    for name in ("loss", "out_a_loss", "out_b_loss"):
        check(outs, name, expected[name], numpy[name])
    assert outs[0]["loss#num"].shape == (4, 3), mode  # two terms + model.losses
    np.testing.assert_array_equal(np.concatenate([o["label/out_b"] for o in outs]), yb)
    np.testing.assert_allclose(np.concatenate([o["out_a"] for o in outs]), pa, rtol=1e-5)
''')
