"""InferenceRunner inside `model.fit`, compared with numpy over the whole set."""

from __future__ import annotations

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import (
    ClassificationError,
    Inferencer,
    InferenceRunner,
    Monitors,
    ScalarPrinter,
    ScalarStats,
    get_current_tower_context,
)

N_VAL = 101  # prime: no batch size divides it


def _data(n, seed, classes=6, dim=8):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype("float32"), rng.integers(0, classes, size=n).astype("int32")


def _model(classes=6, dropout=0.0, loss=None, lr=1e-2, batchnorm=False):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((8,)), keras.layers.Dense(16, activation="relu")]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization())
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(classes))
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(lr),
                  loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _np_sparse_ce(logits, y):
    logits = logits.astype(np.float64)
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y]


@pytest.fixture(scope="module")
def data():
    return _data(256, 0), _data(N_VAL, 1)


def _ds(x, y, batch):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epoch_logs = []
        self.batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append(dict(logs))


def test_fit_matches_numpy_over_whole_set(data):
    (x, y), (xv, yv) = data
    model = _model(dropout=0.5)
    runner = InferenceRunner(_ds(xv, yv, 10), [ScalarStats("loss"), ClassificationError(),
                                                ClassificationError("wrong-top5", "validation_top5_error")])
    history = model.fit(_ds(x, y, 32), epochs=3, verbose=0, callbacks=[runner])
    assert len(history.history["validation_loss"]) == 3
    logits = model.predict(xv, verbose=0)  # dropout off
    np.testing.assert_allclose(history.history["validation_loss"][-1], _np_sparse_ce(logits, yv).mean(), rtol=1e-5)
    assert history.history["validation_error"][-1] == pytest.approx(np.mean(logits.argmax(1) != yv), abs=1e-12)
    top5 = np.argsort(-logits, 1)[:, :5]
    assert history.history["validation_top5_error"][-1] == pytest.approx(np.mean(~(top5 == yv[:, None]).any(1)))
    np.testing.assert_allclose(history.history["validation_loss"][-1],
                               model.evaluate(_ds(xv, yv, 10), verbose=0), rtol=1e-5)
    assert runner.num_samples_last_run == N_VAL


def test_one_hot_labels_and_string_loss(data):
    (x, y), (xv, yv) = data
    model = _model(loss="categorical_crossentropy")
    model.layers[-1].activation = keras.activations.softmax
    onehot = np.eye(6, dtype="float32")
    history = model.fit(_ds(x, onehot[y], 32), epochs=1, verbose=0, callbacks=[
        InferenceRunner(_ds(xv, onehot[yv], 16), [ScalarStats("loss"), ClassificationError()])])
    prob = model.predict(xv, verbose=0).astype(np.float64)
    expected = -np.log(np.clip(prob[np.arange(N_VAL), yv] / prob.sum(1), 1e-7, 1))
    np.testing.assert_allclose(history.history["validation_loss"][0], expected.mean(), rtol=1e-4)
    assert history.history["validation_error"][0] == pytest.approx(np.mean(prob.argmax(1) != yv))


def test_no_retrace_on_partial_batch_across_epochs(data):
    (x, y), (xv, yv) = data
    runner = InferenceRunner(_ds(xv, yv, 7), [ScalarStats("loss")], steps_per_execution=4)
    _model().fit(_ds(x, y, 64), epochs=3, verbose=0, callbacks=[runner])
    assert runner.tracing_count == 1


@pytest.mark.parametrize("steps", [1, 3, 15, 100])
def test_steps_per_execution_does_not_change_what_inferencers_see(data, steps):
    (_, _), (xv, yv) = data
    model = _model()
    seen = []

    class Batches(Inferencer):
        def _get_fetches(self):
            return ["label", "loss"]

        def _on_fetches(self, results):
            seen.append((results[0].copy(), results[1].copy()))

    runner = InferenceRunner(_ds(xv, yv, 7), [Batches()], steps_per_execution=steps)
    runner.set_model(model)
    runner.trigger()
    assert [len(b[0]) for b in seen] == [7] * 14 + [3]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in seen]), yv)
    np.testing.assert_allclose(np.concatenate([b[1] for b in seen]),
                               _np_sparse_ce(model.predict(xv, verbose=0), yv), rtol=1e-5)


def test_inference_mode_dropout_off_batchnorm_untouched(data):
    (x, y), (xv, yv) = data
    model = _model(dropout=0.9, batchnorm=True)
    model.fit(_ds(x, y, 32), epochs=1, verbose=0)
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)][0]
    before = [w.numpy().copy() for w in bn.weights]
    runner = InferenceRunner(_ds(xv * 10 + 3, yv, 16), [ScalarStats("loss")])
    runner.set_model(model)
    first, second = runner.trigger(), runner.trigger()
    assert first == second  # deterministic: no dropout
    for b, w in zip(before, bn.weights):
        np.testing.assert_array_equal(b, w.numpy())


def test_early_stopping_and_monitors_see_results_in_any_order(data, capsys):
    (x, y), (xv, yv) = data
    model = _model(lr=0.0)  # nothing learns: the error never improves
    recorder = Recorder()
    callbacks = [keras.callbacks.EarlyStopping(monitor="validation_error", mode="min", patience=1),
                 Monitors([ScalarPrinter()]), recorder,
                 InferenceRunner(_ds(xv, yv, 16), [ClassificationError()])]  # runner last on purpose
    history = model.fit(_ds(x, y, 64), epochs=10, verbose=0, callbacks=callbacks)
    assert len(history.history["validation_error"]) == 2  # stopped after patience
    assert all("validation_error" in logs for logs in recorder.epoch_logs)
    assert "validation_error" in capsys.readouterr().out


def test_csv_logger_sees_results(data, tmp_path):
    (x, y), (xv, yv) = data
    path = tmp_path / "log.csv"
    _model().fit(_ds(x, y, 64), epochs=2, verbose=0, callbacks=[
        keras.callbacks.CSVLogger(str(path)), InferenceRunner(_ds(xv, yv, 16), ScalarStats("loss"))])
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 2 and all(float(r["validation_loss"]) > 0 for r in rows)


def test_fail_fast_unknown_name_before_any_step(data):
    (x, y), (xv, yv) = data
    recorder = Recorder()
    model = _model()
    with pytest.raises(ValueError, match=r"'no_such_tensor'.*Available names: \[.*'loss'.*'wrong-top1'"):
        model.fit(_ds(x, y, 64), epochs=1, verbose=0, callbacks=[
            recorder, InferenceRunner(_ds(xv, yv, 16), [ScalarStats(["loss", "no_such_tensor"])])])
    assert recorder.batches == 0
    assert int(model.optimizer.iterations.numpy()) == 0


def test_duplicate_result_keys_rejected():
    with pytest.raises(ValueError, match="same key 'validation_error'"):
        InferenceRunner([(np.zeros((2, 8), "float32"), np.zeros(2, "int32"))],
                        [ClassificationError(), ClassificationError("wrong-top5")])


def test_custom_tower_identity_names_input_names_and_tower_context(data):
    (_, _), (xv, yv) = data
    model = _model()
    contexts = []

    def tower(features, target):
        contexts.append(get_current_tower_context().is_training)
        logits = model(features, training=False)
        prob = tf.nn.softmax(logits)
        tf.identity(tf.reduce_max(prob, axis=1), name="confidence")
        return {"logits": logits}

    class Collect(Inferencer):  # a tensorpack-style custom inferencer
        def _before_inference(self):
            self.conf, self.target, self.logits = [], [], []

        def _get_fetches(self):
            return ["confidence", "target", "logits"]

        def _on_fetches(self, results):
            self.conf.append(results[0])
            self.target.append(results[1])
            self.logits.append(results[2])

        def _after_inference(self):
            return {"validation_confidence": float(np.concatenate(self.conf).mean())}

    inf = Collect()
    runner = InferenceRunner(_ds(xv, yv, 9), [inf], tower_func=tower)
    runner.set_model(model)
    result = runner.trigger()
    logits = model.predict(xv, verbose=0)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    np.testing.assert_allclose(result["validation_confidence"], prob.max(1).mean(), rtol=1e-5)
    np.testing.assert_array_equal(np.concatenate(inf.target), yv)
    np.testing.assert_allclose(np.concatenate(inf.logits), logits, rtol=1e-5, atol=1e-6)
    assert contexts and not any(contexts)


def test_tower_returning_scalar_cost_is_weighted(data):
    (_, _), (xv, yv) = data
    model = _model()

    def tower(x, label):
        logits = model(x, training=False)
        cost = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits), name="cost")
        return {"cost": cost}

    runner = InferenceRunner(_ds(xv, yv, 10), ScalarStats("cost"), tower_func=tower)
    runner.set_model(model)
    np.testing.assert_allclose(runner.trigger()["validation_cost"],
                               _np_sparse_ce(model.predict(xv, verbose=0), yv).mean(), rtol=1e-5)


class CountingReset:
    """A tensorpack-style DataFlow: __iter__, __len__, reset_state()."""

    def __init__(self, x, y, batch):
        self.x, self.y, self.batch, self.resets = x, y, batch, 0

    def reset_state(self):
        self.resets += 1

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __iter__(self):
        for i in range(0, len(self.x), self.batch):
            yield [self.x[i:i + self.batch], self.y[i:i + self.batch]]


def test_dataflow_reset_once_and_reiterated_each_epoch(data):
    (x, y), (xv, yv) = data
    df = CountingReset(xv, yv, 16)
    model = _model()
    history = model.fit(_ds(x, y, 64), epochs=3, verbose=0, callbacks=[
        InferenceRunner(df, [ScalarStats("loss"), ClassificationError()])])
    assert df.resets == 1
    logits = model.predict(xv, verbose=0)
    assert history.history["validation_error"][-1] == pytest.approx(np.mean(logits.argmax(1) != yv))


@pytest.mark.parametrize("kind", ["list_of_tuples", "list_of_dicts", "function"])
def test_python_inputs(data, kind):
    (_, _), (xv, yv) = data
    model = _model()
    chunks = [(xv[i:i + 20], yv[i:i + 20]) for i in range(0, N_VAL, 20)]
    if kind == "list_of_tuples":
        source, tower = chunks, None
    elif kind == "list_of_dicts":
        source = [{"x": a, "label": b} for a, b in chunks]

        def tower(x, label):
            return {"wrong-top1": tf.cast(tf.argmax(model(x), 1, output_type=tf.int32) != label, tf.float32)}
    else:
        source, tower = (lambda: (c for c in chunks)), None
    runner = InferenceRunner(source, ClassificationError(), tower_func=tower)
    runner.set_model(model)
    for _ in range(2):  # re-iterated from the start
        err = runner.trigger()["validation_error"]
        assert err == pytest.approx(np.mean(model.predict(xv, verbose=0).argmax(1) != yv))
        assert runner.num_samples_last_run == N_VAL


def test_one_shot_generator_refused(data):
    (_, _), (xv, yv) = data
    gen = ((xv[i:i + 10], yv[i:i + 10]) for i in range(0, N_VAL, 10))
    with pytest.raises(TypeError, match="one-shot iterator.*function returning a fresh iterator"):
        InferenceRunner(gen, ScalarStats("loss"))


@pytest.mark.parametrize("source, match", [
    (lambda: tf.data.Dataset.range(0).batch(2), "empty"),
    (lambda: tf.data.Dataset.range(4).batch(2).repeat(), "infinite"),
    (lambda: [], "yielded no batch"),
])
def test_empty_or_infinite_input_refused(source, match):
    with pytest.raises(ValueError, match=match):
        InferenceRunner(source(), ScalarStats("loss"))


def test_progress_bar_quiet_when_not_a_tty(data, capsys):
    (x, y), (xv, yv) = data
    _model().fit(_ds(x, y, 64), epochs=1, verbose=0, callbacks=[InferenceRunner(_ds(xv, yv, 8), ScalarStats("loss"))])
    captured = capsys.readouterr()
    assert "Inference" not in captured.out + captured.err


def test_unknown_device_lists_available():
    with pytest.raises(ValueError, match=r"'/gpu:7' does not exist.*Available devices: \[.*CPU:0"):
        InferenceRunner([(np.zeros((2, 8), "float32"),)], ScalarStats("output"), device="/gpu:7")


def test_device_argument_runs_there(data):
    (_, _), (xv, yv) = data
    model = _model()
    runner = InferenceRunner(_ds(xv, yv, 10), ClassificationError(), device="/cpu:0")
    runner.set_model(model)
    assert runner.trigger()["validation_error"] == pytest.approx(
        np.mean(model.predict(xv, verbose=0).argmax(1) != yv))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PROPERTY_MODEL = None


@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 60), batch=st.integers(1, 17), steps=st.integers(1, 5))
def test_property_any_set_any_batch_same_numbers(n, batch, steps):
    global _PROPERTY_MODEL
    if _PROPERTY_MODEL is None:
        _PROPERTY_MODEL = _model()
    model = _PROPERTY_MODEL
    xv, yv = _data(n, n)
    runner = InferenceRunner(_ds(xv, yv, batch), [ScalarStats("loss"), ClassificationError()],
                             steps_per_execution=steps)
    runner.set_model(model)
    got = runner.trigger()
    logits = model.predict(xv, verbose=0)
    np.testing.assert_allclose(got["validation_loss"], _np_sparse_ce(logits, yv).mean(), rtol=1e-5)
    assert got["validation_error"] == pytest.approx(np.mean(logits.argmax(1) != yv), abs=1e-12)


@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_classifier_default_tower(data, from_logits):
    from infer_callbacks import BinaryClassificationStats

    (x, y), (xv, yv) = data
    yb, yvb = (y % 2).astype("float32"), (yv % 2).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation=None if from_logits else "sigmoid")])
    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=from_logits))
    history = model.fit(_ds(x, yb, 32), epochs=2, verbose=0, callbacks=[InferenceRunner(
        _ds(xv, yvb, 16), [ClassificationError(), ScalarStats("loss"),
                           BinaryClassificationStats("pred", "label")])])
    out = model.predict(xv, verbose=0)[:, 0]
    pred = out > (0.0 if from_logits else 0.5)
    truth = yvb > 0.5
    assert history.history["validation_error"][-1] == pytest.approx(np.mean(pred != truth))
    assert history.history["val_precision"][-1] == pytest.approx((pred & truth).sum() / max(pred.sum(), 1))
    assert history.history["val_recall"][-1] == pytest.approx((pred & truth).sum() / truth.sum())
    p = 1 / (1 + np.exp(-out.astype(np.float64))) if from_logits else out.astype(np.float64)
    p = np.clip(p, 1e-7, 1 - 1e-7)
    bce = -(truth * np.log(p) + (1 - truth) * np.log(1 - p))
    np.testing.assert_allclose(history.history["validation_loss"][-1], bce.mean(), rtol=1e-4)


def test_unknown_name_lists_named_ops_of_a_custom_tower(data):
    (_, _), (xv, yv) = data
    model = _model()

    def tower(x, label):
        logits = model(x, training=False)
        tf.nn.softmax(logits, name="prob")
        tf.reduce_mean(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) != label, tf.float32), name="err")
        return {"logits": logits}

    runner = InferenceRunner(_ds(xv, yv, 16), ScalarStats("nope"), tower_func=tower)
    runner.set_model(model)
    with pytest.raises(ValueError, match=r"'nope'.*Available names: \['err', 'label', 'logits', 'prob', 'x'\]"):
        runner.setup()
