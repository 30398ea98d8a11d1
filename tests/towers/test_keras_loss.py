"""The default Keras tower's loss where Keras's own value depends on the
batching (a loss returning one scalar per batch, per-token losses over padded
sequences without a mask): the epoch value equals `model.evaluate` on the same
batches. Also: per-output labels, and the errors of labels the loss cannot take."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from helpers.models import classifier
from helpers.towers import tower_fetches
from infer_callbacks.towers.spec import UnknownFetchError, exact_keys

RTOL = 1e-5


def _fetch(model, dataset, names, *, graph=False):
    """Per-batch numpy values of ``names`` (with their exact sums) from the default tower."""
    return tower_fetches(model, dataset.element_spec, names, dataset, graph=graph)


def _epoch(outs, name):
    """sum_k(sum num_k / sum den_k) over all batches, as the runner computes it."""
    num, den = (np.concatenate([o[k] for o in outs]).astype(np.float64) for k in exact_keys(name))
    num, den = num.reshape(len(num), -1).sum(0), den.reshape(len(den), -1).sum(0)
    return float(np.sum(np.where(den != 0, num / np.where(den == 0, 1, den), 0.0)))


# ---------------------------------------------------------------- one scalar per batch

def _mean_square(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred))


class NonPaddingTokenLoss(keras.losses.Loss):
    """keras-io's NER example loss: `call` returns the batch's mean over labels > 0."""

    def call(self, y_true, y_pred):
        per_token = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(y_true, y_pred)
        mask = ops.cast(y_true > 0, "float32")
        return ops.sum(per_token * mask) / ops.sum(mask)


@pytest.mark.parametrize("weighted", [False, True])
def test_a_loss_returning_one_scalar_per_batch_is_evaluate_on_the_same_batches(weighted):
    keras.utils.set_random_seed(11)
    rng = np.random.default_rng(11)
    x = rng.normal(size=(37, 4)).astype("float32")
    y = rng.normal(size=(37, 1)).astype("float32")
    sw = rng.uniform(0.2, 2.0, size=37).astype("float32")
    model = classifier(1, seed=None, optimizer="rmsprop", loss=_mean_square)
    val = tf.data.Dataset.from_tensor_slices((x, y, sw) if weighted else (x, y)).batch(8)  # 8 ... 5
    outs = _fetch(model, val, ["loss"], graph=True)
    np.testing.assert_allclose(_epoch(outs, "loss"), model.evaluate(val, verbose=0), rtol=RTOL)
    # each example carries its batch's value (times its weight)
    batch_value = np.mean((model.predict(x[32:], verbose=0) - y[32:]) ** 2)
    expected = batch_value * (sw[32:] if weighted else 1.0)
    np.testing.assert_allclose(outs[-1]["loss"], expected, rtol=RTOL)


def test_a_loss_subclass_returning_a_scalar_and_the_classifier_error():
    keras.utils.set_random_seed(12)
    rng = np.random.default_rng(12)
    x = rng.integers(1, 20, size=(30, 6)).astype("int32")
    y = rng.integers(0, 5, size=(30, 6)).astype("int32")
    inp = keras.Input((None,), dtype="int32")
    model = keras.Model(inp, keras.layers.Dense(5)(keras.layers.Embedding(20, 4)(inp)))
    model.compile(loss=NonPaddingTokenLoss(), metrics=["accuracy"])
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(7)  # 7, 7, 7, 7, 2
    expected = model.evaluate(val, verbose=0, return_dict=True)
    outs = _fetch(model, val, ["loss", "wrong-top1"])
    np.testing.assert_allclose(_epoch(outs, "loss"), expected["loss"], rtol=RTOL)
    np.testing.assert_allclose(_epoch(outs, "wrong-top1"), 1 - expected["accuracy"], rtol=RTOL)


# ---------------------------------------------------------------- padded sequences, no mask

def _padded(n=40, weighted=False):
    rng = np.random.default_rng(13)
    sequences = [rng.integers(1, 9, size=2 + i // 4).astype("int32") for i in range(n)]  # 2 ... 11 long
    weights = rng.uniform(0.2, 2.0, size=n).astype("float32")

    def rows():
        for s, w in zip(sequences, weights):
            yield (s, s % 5, w) if weighted else (s, s % 5)

    signature = (tf.TensorSpec([None], tf.int32),) * 2 + ((tf.TensorSpec([], tf.float32),) if weighted else ())
    return tf.data.Dataset.from_generator(rows, output_signature=signature).padded_batch(16)  # 16, 16, 8


def _token_model(**compile_kwargs):
    keras.utils.set_random_seed(13)
    inp = keras.Input((None,), dtype="int32")
    model = keras.Model(inp, keras.layers.Dense(5)(keras.layers.Embedding(9, 4)(inp)))  # no mask
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **compile_kwargs)
    return model


def test_padded_sequences_without_a_mask_are_evaluate_on_the_same_batches():
    model = _token_model(metrics=["accuracy"])
    val = _padded()
    expected = model.evaluate(val, verbose=0, return_dict=True)
    outs = _fetch(model, val, ["loss", "wrong-top1", "output"])
    assert [o["output"].shape[:2] for o in outs] == [(16, 5), (16, 9), (8, 11)]  # lengths differ
    np.testing.assert_allclose(_epoch(outs, "loss"), expected["loss"], rtol=RTOL)
    # Keras's accuracy is the mean over every token of the set, padding included
    np.testing.assert_allclose(_epoch(outs, "wrong-top1"), 1 - expected["accuracy"], rtol=RTOL)


def test_padded_sequences_with_per_example_weights_spread_them_over_the_positions():
    model = _token_model(weighted_metrics=["accuracy"])
    val = _padded(weighted=True)
    # Keras 3.15 refuses [B] weights on a [B, T] loss: give it the per-token version.
    per_token = val.map(lambda x, y, w: (x, y, tf.broadcast_to(w[:, None], tf.shape(x))))
    expected = model.evaluate(per_token, verbose=0, return_dict=True)
    outs = _fetch(model, val, ["loss", "wrong-top1"])
    np.testing.assert_allclose(_epoch(outs, "loss"), expected["loss"], rtol=RTOL)
    np.testing.assert_allclose(_epoch(outs, "wrong-top1"), 1 - expected["accuracy"], rtol=RTOL)


# ---------------------------------------------------------------- labels of several outputs

def _two_heads():
    keras.utils.set_random_seed(14)
    inp = keras.Input((4,))
    model = keras.Model(inp, {"cls": keras.layers.Dense(3, name="cls")(inp),
                              "reg": keras.layers.Dense(1, name="reg")(inp)})
    model.compile(loss={"cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "reg": "mse"})
    rng = np.random.default_rng(14)
    x = rng.normal(size=(20, 4)).astype("float32")
    return model, x, rng.integers(0, 3, size=20).astype("int32"), x[:, :1] * 2


@pytest.mark.parametrize("as_dict", [True, False], ids=["dict", "list"])
def test_each_outputs_labels_are_fetchable_as_label_slash_output(as_dict):
    model, x, y_cls, y_reg = _two_heads()
    labels = {"cls": y_cls, "reg": y_reg} if as_dict else (y_cls, y_reg)  # outputs in key order
    val = tf.data.Dataset.from_tensor_slices((x, labels)).batch(8)
    outs = _fetch(model, val, ["label/cls", "label/reg", "loss"], graph=True)
    np.testing.assert_array_equal(np.concatenate([o["label/cls"] for o in outs]), y_cls)
    np.testing.assert_array_equal(np.concatenate([o["label/reg"] for o in outs]), y_reg)
    np.testing.assert_allclose(_epoch(outs, "loss"), model.evaluate(val, verbose=0, return_dict=True)["loss"],
                               rtol=RTOL)


def test_unknown_name_lists_labels_and_no_internal_op_names():
    model, x, y_cls, y_reg = _two_heads()
    val = tf.data.Dataset.from_tensor_slices((x, {"cls": y_cls, "reg": y_reg})).batch(8)
    with pytest.raises(UnknownFetchError, match="no_such") as info:
        _fetch(model, val, ["no_such"], graph=True)
    listed = str(info.value).split("Available names: ")[1]
    assert "'label/cls'" in listed and "'label/reg'" in listed and "'cls/wrong-top1'" in listed
    assert "div_no_nan" not in listed


# ---------------------------------------------------------------- labels the loss cannot take

def test_one_hot_labels_with_a_sparse_loss_name_the_labels_shape_and_the_loss():
    keras.utils.set_random_seed(15)
    model = classifier(seed=None, optimizer="rmsprop")
    x = np.zeros((6, 4), "float32")
    val = tf.data.Dataset.from_tensor_slices((x, np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]])).batch(4)
    with pytest.raises(ValueError, match=r"SparseCategoricalCrossentropy.*validation set's batches: labels of "
                                         r"shape \(None, 3\).*one-hot.*CategoricalCrossentropy"):
        _fetch(model, val, ["loss"], graph=True)


@pytest.mark.parametrize("name", ["loss", "wrong-top1"])
def test_batches_without_labels_say_that_loss_needs_x_y_batches(name):
    model = classifier(seed=None, optimizer="rmsprop")
    val = tf.data.Dataset.from_tensor_slices(np.zeros((6, 4), "float32")).batch(4)
    with pytest.raises(UnknownFetchError, match=rf"'{name}'.*\['input', 'output'\].*carry no labels.*\(x, y\)"):
        _fetch(model, val, [name])
    assert "output" in _fetch(model, val, ["output"])[0]  # what it has still works


def test_docstring_examples_run():
    import doctest

    import infer_callbacks.towers.keras_loss
    import infer_callbacks.towers.keras_shapes

    for module in (infer_callbacks.towers.keras_loss, infer_callbacks.towers.keras_shapes):
        assert doctest.testmod(module).failed == 0, module
