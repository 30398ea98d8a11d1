"""Keras-style array data, ``(x, y)`` and ``(x, y, sample_weight)``, taken as
``fit(validation_data=...)`` takes it: batched, and the same numbers as
``model.evaluate(x, y, batch_size=...)``."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import ClassificationError, InferenceRunner, ScalarStats
from infer_callbacks.data.source import InputSource

N = 45  # no batch size used here divides it: the last batch is partial


def _data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 5)).astype("float32"), rng.integers(0, 3, size=n).astype("int32"),
            rng.uniform(0.1, 2.0, size=n).astype("float32"))


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _batch_sizes(source):
    return [int(tf.nest.flatten(b)[0].shape[0]) for b in source.dataset]


@pytest.mark.parametrize("batch_size", [None, 7])
def test_x_y_tuple_matches_evaluate(batch_size):
    x, y, _ = _data()
    model = _model()
    runner = InferenceRunner((x, y), [ScalarStats("loss"), ClassificationError()], batch_size=batch_size,
                             verbose=False)
    expected = 32 if batch_size is None else batch_size  # Keras's default
    assert _batch_sizes(runner.input) == [expected] * (N // expected) + [N % expected]
    runner.set_model(model)
    results = runner.trigger()
    loss, acc = model.evaluate(x, y, batch_size=expected, verbose=0)
    np.testing.assert_allclose(results["validation_loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(results["validation_error"], 1 - acc, atol=1e-6)
    assert runner.num_samples_last_run == N


def test_sample_weights_match_evaluate_and_fit_validation_data():
    x, y, w = _data()
    xt, yt, _ = _data(seed=1, n=64)
    model = _model()
    runner = InferenceRunner((x, y, w), ScalarStats("loss"), batch_size=10, verbose=False)
    history = model.fit(xt, yt, epochs=2, verbose=0, validation_data=(x, y, w), validation_batch_size=10,
                        callbacks=[runner])
    np.testing.assert_allclose(history.history["validation_loss"], history.history["val_loss"], rtol=1e-5)
    loss, _ = model.evaluate(x, y, sample_weight=w, batch_size=10, verbose=0)
    np.testing.assert_allclose(runner.last_results["validation_loss"], loss, rtol=1e-5)
    unweighted, _ = model.evaluate(x, y, batch_size=10, verbose=0)
    assert abs(loss - unweighted) > 1e-3  # the weights matter


def test_a_list_of_tuples_is_still_a_list_of_batches():
    x, y, _ = _data()
    assert _batch_sizes(InputSource([(x, y)])) == [N]
    assert _batch_sizes(InputSource([(x[:20], y[:20]), (x[20:], y[20:])])) == [20, 25]


def test_dict_inputs_are_array_data():
    x, y, _ = _data()
    source = InputSource(({"features": x}, y), batch_size=16)
    assert _batch_sizes(source) == [16, 16, 13]
    first = next(iter(source.dataset))
    np.testing.assert_array_equal(first[0]["features"].numpy(), x[:16])
    np.testing.assert_array_equal(first[1].numpy(), y[:16])


def test_arrays_of_different_lengths_name_them():
    x, y, w = _data()
    with pytest.raises(ValueError, match=r"x has 45, y has 44.*list of \(x, y\) tuples"):
        InferenceRunner((x, y[:-1]), ScalarStats("loss"))
    with pytest.raises(ValueError, match=r"sample_weight has 3"):
        InputSource((x, y, w[:3]))


@pytest.mark.parametrize("make", [
    lambda x, y: [(x, y)],
    lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)).batch(8),
    lambda x, y: (lambda: iter([(x, y)])),
])
def test_batch_size_with_an_input_that_is_batched_already_names_its_type(make):
    x, y, _ = _data()
    source = make(x, y)
    with pytest.raises(TypeError, match=f"batch_size.*{type(source).__qualname__}"):
        InferenceRunner(source, ScalarStats("loss"), batch_size=8)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "32"])
def test_bad_batch_size_is_named(bad):
    x, y, _ = _data()
    with pytest.raises(ValueError, match=f"batch_size={bad!r}"):
        InputSource((x, y), batch_size=bad)
