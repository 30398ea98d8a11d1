"""Losses whose Keras value depends on the batching, inside ``model.fit``:
the runner's ``validation_loss`` equals Keras's own ``val_loss`` from
``fit(validation_data=...)`` on the same validation batches, every epoch."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import ClassificationError, InferenceRunner, ScalarStats


def _batch_mean_crossentropy(y_true, y_pred):
    """One scalar per batch, as many user losses are written."""
    return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True))


def _fit_both(model, train, val, infs):
    history = model.fit(train, validation_data=val, epochs=2, verbose=0,
                        callbacks=[InferenceRunner(val, infs)])
    return history.history


def test_a_scalar_per_batch_loss_in_fit_is_keras_val_loss_and_the_error_works():
    keras.utils.set_random_seed(21)
    rng = np.random.default_rng(21)
    x, y = rng.normal(size=(96, 8)).astype("float32"), rng.integers(0, 6, size=96).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6)])
    model.compile(optimizer="sgd", loss=_batch_mean_crossentropy, metrics=["accuracy"])
    train = tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[64:], y[64:])).batch(10)  # 10, 10, 10, 2
    logs = _fit_both(model, train, val, [ScalarStats("loss"), ClassificationError()])
    np.testing.assert_allclose(logs["validation_loss"], logs["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(logs["validation_error"], 1 - np.asarray(logs["val_accuracy"]), rtol=1e-5)


def test_padded_sequences_without_a_mask_in_fit_are_keras_val_loss():
    keras.utils.set_random_seed(22)
    rng = np.random.default_rng(22)
    sequences = [rng.integers(1, 9, size=2 + i // 5).astype("int32") for i in range(45)]

    def padded(rows):
        def gen():
            for s in rows:
                yield s, s % 4
        spec = (tf.TensorSpec([None], tf.int32),) * 2
        return tf.data.Dataset.from_generator(gen, output_signature=spec).padded_batch(8)

    inp = keras.Input((None,), dtype="int32")
    model = keras.Model(inp, keras.layers.Dense(4)(keras.layers.Embedding(9, 4)(inp)))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    logs = _fit_both(model, padded(sequences[::2]), padded(sequences[1::2]),
                     [ScalarStats("loss"), ClassificationError()])
    np.testing.assert_allclose(logs["validation_loss"], logs["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(logs["validation_error"], 1 - np.asarray(logs["val_accuracy"]), rtol=1e-5)


def test_one_hot_labels_for_a_sparse_loss_fail_before_training():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = np.zeros((12, 8), "float32"), np.zeros(12, "int32")
    val = tf.data.Dataset.from_tensor_slices((x, np.eye(3, dtype="float32")[y])).batch(4)
    steps = []
    with pytest.raises(ValueError, match=r"sparse_categorical_crossentropy.*validation set's batches.*\(None, 3\)"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[
            InferenceRunner(val, ScalarStats("loss")),
            keras.callbacks.LambdaCallback(on_train_batch_begin=lambda *a: steps.append(1))])
    assert steps == []
