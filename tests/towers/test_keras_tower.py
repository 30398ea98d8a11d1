"""The default Keras tower against Keras itself: the exact sums over any
batch split equal `model.evaluate` on the whole set taken as one batch."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.towers import compiled, to_numpy, tower_fetches
from infer_callbacks.towers.keras_tower import keras_tower_func
from infer_callbacks.towers.spec import SAMPLE_WEIGHT_KEY, exact_keys

RTOL = 1e-5


def _split(arrays, cuts):
    """Batches of ``arrays`` (a tuple) cut at the sorted positions ``cuts``."""
    edges = [0, *sorted(cuts), len(arrays[0])]
    return [tuple(tf.constant(a[s:e]) for a in arrays) for s, e in zip(edges, edges[1:]) if e > s]


def _run(model, batches, *, graph=False):
    """Per-batch numpy outputs of the model's tower, run as the backend's engine runs it."""
    batches = [tf.nest.map_structure(tf.convert_to_tensor, b) for b in batches]
    spec = tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype), batches[0])
    names = [k for k in keras_tower_func(model)(*batches[0]) if "#" not in k]
    return tower_fetches(model, spec, names, batches, graph=graph)


def _exact(outs, name):
    """sum_k(sum num_k / sum den_k) over all batches, as the runner computes it."""
    num, den = (np.concatenate([o[k] for o in outs]).astype(np.float64) for k in exact_keys(name))
    num, den = num.reshape(len(num), -1).sum(0), den.reshape(len(den), -1).sum(0)
    return float(np.sum(np.where(den != 0, num / np.where(den == 0, 1, den), 0.0)))


def _evaluate(model, arrays):
    x, y, *sw = arrays
    return model.evaluate(x, y, sample_weight=sw[0] if sw else None, batch_size=len(x), verbose=0,
                          return_dict=True)


SPLITS = [[], [4, 8], [1, 2, 3, 9], [10]]  # one batch, equal batches with a partial last one, ...


# ---------------------------------------------------------------- masked sequences

def _sequence_data(n=11, steps=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 9, size=(n, steps)).astype("int32")
    lengths = rng.integers(0, steps + 1, size=n)
    lengths[:2] = [0, steps]  # one fully padded row, one full row
    for i, length in enumerate(lengths):
        x[i, length:] = 0
    y = rng.integers(0, 6, size=(n, steps)).astype("int32")
    sw = rng.uniform(0.1, 2.0, size=n).astype("float32")
    return x, y, sw


def _sequence_model(rnn):
    keras.utils.set_random_seed(3)
    inp = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(9, 4, mask_zero=True)(inp)
    if rnn is not None:
        h = rnn(5, return_sequences=True)(h)
    out = keras.layers.Dense(6)(h)
    model = keras.Model(inp, out)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc"),
                                    keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")])
    return model


@pytest.mark.parametrize("rnn", [keras.layers.LSTM, keras.layers.GRU, None], ids=["lstm", "gru", "dense"])
@pytest.mark.parametrize("weighted", [False, True])
def test_masked_sequence_loss_and_error_are_keras_over_the_whole_set(rnn, weighted):
    model = _sequence_model(rnn)
    x, y, sw = _sequence_data()
    arrays = (x, y, sw) if weighted else (x, y)
    # Keras 3.15 refuses [B] weights on a [B, T] loss: give it the per-token version.
    expected = _evaluate(model, (x, y, np.repeat(sw[:, None], x.shape[1], 1)) if weighted else (x, y))
    for i, cuts in enumerate(SPLITS):
        outs = _run(model, _split(arrays, cuts), graph=i == 1)
        np.testing.assert_allclose(_exact(outs, "loss"), expected["loss"], rtol=RTOL)
        np.testing.assert_allclose(_exact(outs, "wrong-top1"), 1 - expected["acc"], rtol=RTOL)
        np.testing.assert_allclose(_exact(outs, "wrong-top5"), 1 - expected["top5"], rtol=RTOL)
        assert (SAMPLE_WEIGHT_KEY in outs[0]) == weighted
        assert all(o["loss"].shape == o["wrong-top1"].shape == (len(o["output"]),) for o in outs)


def test_temporal_sample_weights_match_keras():
    model = _sequence_model(keras.layers.LSTM)
    x, y, _ = _sequence_data()
    sw = np.random.default_rng(5).uniform(0, 1, size=x.shape).astype("float32")
    expected = _evaluate(model, (x, y, sw))
    outs = _run(model, _split((x, y, sw), [3, 6]))
    np.testing.assert_allclose(_exact(outs, "loss"), expected["loss"], rtol=RTOL)
    np.testing.assert_allclose(_exact(outs, "wrong-top1"), 1 - expected["acc"], rtol=RTOL)
    assert SAMPLE_WEIGHT_KEY not in outs[0]  # only per-example weights are exported


@pytest.fixture(scope="module")
def gru_case():
    model = _sequence_model(keras.layers.GRU)
    x, y, sw = _sequence_data()
    return model, (x, y, sw), _evaluate(model, (x, y, np.repeat(sw[:, None], x.shape[1], 1)))


@settings(max_examples=8, deadline=None)
@given(cuts=st.sets(st.integers(1, 10), max_size=6))
def test_any_batch_split_gives_the_whole_set_value(gru_case, cuts):
    model, arrays, expected = gru_case
    outs = _run(model, _split(arrays, cuts))
    np.testing.assert_allclose(_exact(outs, "loss"), expected["loss"], rtol=RTOL)
    np.testing.assert_allclose(_exact(outs, "wrong-top1"), 1 - expected["acc"], rtol=RTOL)


def test_plain_loss_is_keras_loss_of_each_example_alone():
    model = _sequence_model(keras.layers.LSTM)
    x, y, sw = _sequence_data()
    (out,) = _run(model, _split((x, y, sw), []))
    for i in (1, 4):
        alone = _evaluate(model, (x[i:i + 1], y[i:i + 1], np.repeat(sw[i:i + 1, None], x.shape[1], 1)))
        np.testing.assert_allclose(out["loss"][i], alone["loss"], rtol=RTOL)
    assert out["loss"][0] == 0 and out["wrong-top1"][0] == 0  # fully padded row: nothing to count
    np.testing.assert_allclose(out[SAMPLE_WEIGHT_KEY], sw)


# ---------------------------------------------------------------- several outputs

def _two_outputs(dict_outputs=False, **compile_kwargs):
    keras.utils.set_random_seed(4)
    inp = keras.Input((3,))
    a = keras.layers.Dense(2, name="out_a", kernel_regularizer=keras.regularizers.L2(0.1))(inp)
    b = keras.layers.Dense(4, name="out_b", activity_regularizer=keras.regularizers.L1(0.01))(inp)
    model = keras.Model(inp, {"p": a, "q": b} if dict_outputs else [a, b])
    model.compile(**compile_kwargs)
    return model


def _regression_data(n=10):
    rng = np.random.default_rng(1)
    return (rng.normal(size=(n, 3)).astype("float32"), rng.normal(size=(n, 2)).astype("float32"),
            rng.normal(size=(n, 4)).astype("float32"), rng.uniform(0, 2, size=n).astype("float32"))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("compile_kwargs", [
    {"loss": "mse"},
    {"loss": {"out_a": "mse", "out_b": keras.losses.MeanAbsoluteError()},
     "loss_weights": {"out_a": 2.0, "out_b": 0.5}},
    {"loss": ["mae", keras.losses.Huber()], "loss_weights": [0.3, 1.7]},
], ids=["one-loss", "dict", "list"])
def test_two_outputs_sum_weighted_terms_and_regularizers_as_evaluate(compile_kwargs, weighted):
    model = _two_outputs(**compile_kwargs)
    x, ya, yb, sw = _regression_data()
    # Keras 3.15's evaluate fails on dict labels with one sample_weight array (KeyError: 0).
    y = {"out_a": ya, "out_b": yb} if isinstance(compile_kwargs["loss"], dict) and not weighted else (ya, yb)
    expected = model.evaluate(x, y, sample_weight=sw if weighted else None, batch_size=len(x),
                              verbose=0, return_dict=True)
    assert set(expected) == {"loss", "out_a_loss", "out_b_loss"}
    rows = (x, ya, yb, sw)
    for cuts in SPLITS:
        batches = [(b[0], {"out_a": b[1], "out_b": b[2]} if isinstance(y, dict) else (b[1], b[2]),
                    *((b[3],) if weighted else ())) for b in _split(rows, cuts)]
        outs = _run(model, batches)
        for name in expected:
            np.testing.assert_allclose(_exact(outs, name), expected[name], rtol=RTOL, err_msg=name)
    # unmasked: the mean of the per-example loss is the loss too
    np.testing.assert_allclose(np.concatenate([o["loss"] for o in outs]).mean(), expected["loss"], rtol=RTOL)
    assert outs[0]["loss#num"].shape == (len(outs[0]["loss"]), 3)  # two terms + model.losses


def test_dict_outputs_are_named_by_their_keys():
    model = _two_outputs(dict_outputs=True, loss="mse")
    x, ya, yb, _ = _regression_data()
    expected = model.evaluate(x, {"p": ya, "q": yb}, batch_size=len(x), verbose=0, return_dict=True)
    assert set(expected) == {"loss", "p_loss", "q_loss"}
    outs = _run(model, [(tf.constant(x[:6]), {"p": ya[:6], "q": yb[:6]}),
                        (tf.constant(x[6:]), {"p": ya[6:], "q": yb[6:]})])
    for name in expected:
        np.testing.assert_allclose(_exact(outs, name), expected[name], rtol=RTOL, err_msg=name)
    assert {"p", "q"} <= set(outs[0]) and "output" not in outs[0]


# ---------------------------------------------------------------- classifiers

def _classifier_data(n=13, classes=7):
    rng = np.random.default_rng(2)
    return (rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, classes, size=n).astype("int32"),
            rng.uniform(0, 3, size=n).astype("float32"))


@pytest.mark.parametrize("case", ["sparse-logits", "onehot-logits", "onehot-probs", "sparse-probs", "auto"])
def test_classifier_loss_and_weighted_error_match_keras(case):
    keras.utils.set_random_seed(5)
    probs = case.endswith("probs")
    layers = [keras.Input((4,)), keras.layers.Dense(7, activation="softmax" if probs else None)]
    loss = {"sparse-logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "onehot-logits": keras.losses.CategoricalCrossentropy(from_logits=True),
            "onehot-probs": "categorical_crossentropy", "sparse-probs": "sparse_categorical_crossentropy",
            "auto": "crossentropy"}[case]
    model = keras.Sequential(layers)
    model.compile(loss=loss, weighted_metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(
        k=5, name="top5") if "onehot" in case else keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")])
    x, y, sw = _classifier_data()
    if "onehot" in case:
        y = np.eye(7, dtype="float32")[y]
    expected = _evaluate(model, (x, y, sw))
    outs = _run(model, _split((x, y, sw), [5, 10]))
    np.testing.assert_allclose(_exact(outs, "loss"), expected["loss"], rtol=RTOL)
    np.testing.assert_allclose(_exact(outs, "wrong-top1"), 1 - expected["accuracy"], rtol=RTOL)
    np.testing.assert_allclose(_exact(outs, "wrong-top5"), 1 - expected["top5"], rtol=RTOL)
    plain = np.concatenate([o["wrong-top1"] for o in outs])
    np.testing.assert_array_equal(plain, model.predict(x, verbose=0).argmax(1) != y.reshape(len(x), -1).argmax(1)
                                  if "onehot" in case else model.predict(x, verbose=0).argmax(1) != y)


@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_classifier_pred_and_error(from_logits):
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation=None if from_logits else "sigmoid")])
    threshold = 0.0 if from_logits else 0.5
    model.compile(loss=keras.losses.BinaryCrossentropy(from_logits=from_logits),
                  weighted_metrics=[keras.metrics.BinaryAccuracy(threshold=threshold, name="acc")])
    x, y, sw = _classifier_data()
    y = (y % 2).astype("float32")
    expected = _evaluate(model, (x, y, sw))
    outs = _run(model, _split((x, y, sw), [4]))
    np.testing.assert_allclose(_exact(outs, "loss"), expected["loss"], rtol=RTOL)
    np.testing.assert_allclose(_exact(outs, "wrong-top1"), 1 - expected["acc"], rtol=RTOL)
    pred = np.concatenate([o["pred"] for o in outs])
    np.testing.assert_array_equal(pred, (model.predict(x, verbose=0)[:, 0] > threshold).astype(int))
    assert "wrong-top5" not in outs[0]


def test_two_classifier_outputs_have_their_own_error():
    keras.utils.set_random_seed(7)
    inp = keras.Input((4,))
    model = keras.Model(inp, [keras.layers.Dense(3, name="coarse")(inp), keras.layers.Dense(6, name="fine")(inp)])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[["accuracy"], ["accuracy"]])
    x, y, sw = _classifier_data()
    y3, y6 = y % 3, y % 6
    expected = model.evaluate(x, (y3, y6), sample_weight=sw, batch_size=len(x), verbose=0, return_dict=True)
    outs = _run(model, [(tf.constant(x[s]), (y3[s], y6[s]), sw[s]) for s in (slice(0, 8), slice(8, None))])
    for name in ("loss", "coarse_loss", "fine_loss"):
        np.testing.assert_allclose(_exact(outs, name), expected[name], rtol=RTOL)
    for output in ("coarse", "fine"):
        np.testing.assert_allclose(_exact(outs, f"{output}/wrong-top1"), 1 - expected[f"{output}_accuracy"], rtol=RTOL)
    assert "wrong-top1" not in outs[0] and "fine/wrong-top5" in outs[0] and "coarse/wrong-top5" not in outs[0]


def test_regression_output_is_not_a_classifier_and_unlabelled_batches_have_no_loss():
    model = _two_outputs(loss="mse")
    x, ya, yb, _ = _regression_data()
    out = keras_tower_func(model)(tf.constant(x), (ya, yb))
    assert not any("wrong" in k for k in out)
    out = keras_tower_func(model)(tf.constant(x))
    assert set(out) == {"out_a", "out_b"}


def test_under_a_stateless_scope_the_loss_keeps_the_calls_activity_regularizers():
    """Weights read through `keras.StatelessScope` (a snapshot; collect_losses=False)."""
    model = _two_outputs(loss="mse")
    x, ya, yb, _ = _regression_data()
    expected = model.evaluate(x, (ya, yb), batch_size=len(x), verbose=0, return_dict=True)["loss"]
    tower = keras_tower_func(model)

    def scoped(*batch):
        with keras.StatelessScope(state_mapping=[(v, v.value) for v in model.variables]):
            return tower(*batch)

    for fn in (scoped, compiled(scoped)):
        loss = fn(keras.ops.convert_to_tensor(x), (keras.ops.convert_to_tensor(ya), keras.ops.convert_to_tensor(yb)))
        np.testing.assert_allclose(to_numpy(loss["loss"]).mean(), expected, rtol=RTOL)


def test_a_model_with_its_own_inference_tower_supplies_it():
    class Described(keras.Model):
        def inference_tower(self):
            return lambda x: {"twice": 2 * x}

    tower = keras_tower_func(Described())
    np.testing.assert_array_equal(tower(tf.ones(2))["twice"].numpy(), [2, 2])


class _Cubed(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred) ** 3, axis=-1)


def _abs_error(y_true, y_pred):
    return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)


@pytest.mark.parametrize("loss", [_abs_error, lambda t, p: keras.ops.square(t - p), _Cubed()],
                         ids=["function", "lambda", "subclass"])
def test_user_losses_are_called_as_keras_calls_them(loss):
    keras.utils.set_random_seed(8)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(loss=loss, loss_weights=0.5)
    x, ya, _, sw = _regression_data()
    # rank-1 labels for a [B, 1] output: Keras aligns them for loss functions only
    # (a Loss subclass would broadcast them to [B, B], a per-batch value).
    y = ya[:, :1] if isinstance(loss, keras.losses.Loss) else ya[:, 0]
    expected = _evaluate(model, (x, y, sw))
    outs = _run(model, _split((x, y, sw), [3, 7]))
    np.testing.assert_allclose(_exact(outs, "loss"), expected["loss"], rtol=RTOL)


def test_docstring_examples_run():
    import doctest

    import infer_callbacks.towers.keras_tower as module

    assert doctest.testmod(module).failed == 0
