"""InferenceRunner as a Keras user meets it: inside ``model.fit`` and
standalone, compared with numpy over the whole set and with Keras itself
(``evaluate``, ``fit(validation_data=...)``) in the same process."""

from __future__ import annotations

import csv
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BACKEND, assert_step_threads_end, run_python
from helpers.runner import N_VAL, random_data, batched, dense_classifier, data  # noqa: F401
from infer_callbacks import (
    BinaryClassificationStats,
    ClassificationError,
    Inferencer,
    InferenceRunner,
    ScalarStats,
)


def _np_sparse_ce(logits, y):
    logits = logits.astype(np.float64)
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y]


class Recorder(keras.callbacks.Callback):
    """A user's callback: what it sees in each hook."""

    def __init__(self):
        super().__init__()
        self.epoch_logs, self.events = [], []
        self.batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.batches += 1

    def on_test_begin(self, logs=None):
        self.events.append("test_begin")

    def on_test_batch_begin(self, batch, logs=None):
        if self.events[-1] != "test_batch":
            self.events.append("test_batch")

    def on_test_end(self, logs=None):
        self.events.append("test_end")

    def on_epoch_end(self, epoch, logs=None):
        self.events.append("epoch_end")
        self.epoch_logs.append(dict(logs))


class Batches(Inferencer):
    """A tensorpack-style custom inferencer that keeps every batch it is given."""

    def __init__(self, names=("label", "loss")):
        self.names = list(names)

    def _before_inference(self):
        self.batches = []

    def _get_fetches(self):
        return self.names

    def _on_fetches(self, results):
        self.batches.append([np.array(r, copy=True) for r in results])

    def _after_inference(self):
        return {"batches_seen": len(self.batches)}


# -- numbers ----------------------------------------------------------------

def test_fit_matches_numpy_and_evaluate(data):
    (x, y), (xv, yv) = data
    model = dense_classifier(dropout=0.5)
    runner = InferenceRunner(batched(xv, yv, 10), [ScalarStats("loss"), ClassificationError(),
                                                ClassificationError("wrong-top5", "validation_top5_error")])
    history = model.fit(batched(x, y, 32), epochs=2, verbose=0, callbacks=[runner])
    assert len(history.history["validation_loss"]) == 2
    logits = model.predict(xv, verbose=0)  # dropout off
    np.testing.assert_allclose(history.history["validation_loss"][-1], _np_sparse_ce(logits, yv).mean(), rtol=1e-5)
    np.testing.assert_allclose(history.history["validation_loss"][-1],
                               model.evaluate(batched(xv, yv, 10), verbose=0), rtol=1e-5)
    assert history.history["validation_error"][-1] == pytest.approx(np.mean(logits.argmax(1) != yv), abs=1e-12)
    top5 = np.argsort(-logits, 1)[:, :5]
    assert history.history["validation_top5_error"][-1] == pytest.approx(np.mean(~(top5 == yv[:, None]).any(1)))
    assert runner.num_samples_last_run == N_VAL
    assert runner.last_results == {k: v[-1] for k, v in history.history.items() if k.startswith("validation")}


@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 60), batch=st.integers(1, 17), steps=st.integers(1, 5))
def test_property_any_set_any_batch_same_numbers(n, batch, steps):
    model = _property_model()
    xv, yv = random_data(n, n)
    runner = InferenceRunner(batched(xv, yv, batch), [ScalarStats("loss"), ClassificationError()],
                             steps_per_execution=steps)
    runner.set_model(model)
    got = runner.trigger()
    logits = model.predict(xv, verbose=0)
    np.testing.assert_allclose(got["validation_loss"], _np_sparse_ce(logits, yv).mean(), rtol=1e-5)
    assert got["validation_error"] == pytest.approx(np.mean(logits.argmax(1) != yv), abs=1e-12)


_PROPERTY_MODEL = []


def _property_model():
    if not _PROPERTY_MODEL:
        _PROPERTY_MODEL.append(dense_classifier())
    return _PROPERTY_MODEL[0]


@pytest.mark.parametrize("steps, pipeline", [(1, False), (3, True), (64, True), (1000, False)])
def test_inferencers_see_the_same_batches_whatever_the_call_size(data, steps, pipeline):
    (_, _), (xv, yv) = data
    model = dense_classifier()
    inf = Batches(["label", "loss", "output"])
    runner = InferenceRunner(batched(xv, yv, 7), [inf, ScalarStats("loss")], steps_per_execution=steps,
                             pipeline=pipeline)
    runner.set_model(model)
    results = runner.trigger()
    assert results["batches_seen"] == 15
    assert [len(b[0]) for b in inf.batches] == [7] * 14 + [3]  # handed over as they come, in order
    np.testing.assert_array_equal(np.concatenate([b[0] for b in inf.batches]), yv)
    logits = model.predict(xv, verbose=0)
    np.testing.assert_allclose(np.concatenate([b[1] for b in inf.batches]), _np_sparse_ce(logits, yv), rtol=1e-5)
    np.testing.assert_allclose(np.concatenate([b[2] for b in inf.batches]), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["validation_loss"], _np_sparse_ce(logits, yv).mean(), rtol=1e-5)


def _most_compiles(jax_variants: int) -> int:
    """The most step compiles a run may take: TensorFlow traces one step for
    every batch shape; JAX compiles one per batch shape and call size."""
    return 1 if BACKEND == "tensorflow" else jax_variants


class Compiles(keras.callbacks.Callback):
    """The runner's compile count at each epoch's end (after it validated)."""

    def __init__(self, runner):
        super().__init__()
        self.runner, self.counts = runner, []

    def on_epoch_end(self, epoch, logs=None):
        self.counts.append(self.runner.tracing_count)


def test_no_retrace_across_epochs_and_a_partial_last_batch(data):
    (x, y), (xv, yv) = data
    runner = InferenceRunner(batched(xv, yv, 7), [ScalarStats("loss")], steps_per_execution=4)
    compiles = Compiles(runner)
    dense_classifier().fit(batched(x, y, 64), epochs=3, verbose=0, callbacks=[runner, compiles])
    # JAX: full batches in calls of 1 and 4, the partial last one alone; nothing new after epoch 1
    assert compiles.counts == [compiles.counts[0]] * 3
    assert 1 <= compiles.counts[0] <= _most_compiles(3)


def test_padded_batches_reach_a_custom_inferencer_as_they_are():
    # Sequences of different lengths, padded per batch: each batch's
    # per-token outputs keep their own length; one trace for all of them.
    rng = np.random.default_rng(5)
    lengths = [3, 9, 2, 7, 5, 11, 4, 6, 8, 1, 10, 3, 2]
    seqs = [rng.integers(1, 20, size=n).astype("int32") for n in lengths]
    tags = [rng.integers(0, 4, size=n).astype("int32") for n in lengths]
    ds = tf.data.Dataset.from_generator(
        lambda: zip(seqs, tags),
        output_signature=(tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)))
    ds = ds.padded_batch(2)  # 7 batches, the last one with a single sequence
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(20, 6),
                              keras.layers.Dense(4)])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class PerToken(Inferencer):
        def _before_inference(self):
            self.batches = []

        def _get_fetches(self):
            return ["output", "label"]

        def _on_fetches(self, results):
            self.batches.append((results[0].copy(), results[1].copy()))

        def _after_inference(self):
            return {"validation_tokens": float(sum(lab.size for _, lab in self.batches))}

    inf = PerToken()
    runner = InferenceRunner(ds, [inf], steps_per_execution=16)
    runner.set_model(model)
    counts = []
    for _ in range(2):
        runner.trigger()
        counts.append(runner.tracing_count)
        expected = list(ds.as_numpy_iterator())
        assert len(inf.batches) == len(expected) == 7
        for (out, lab), (xb, yb) in zip(inf.batches, expected):
            assert out.shape == xb.shape + (4,) and lab.shape == yb.shape
            np.testing.assert_array_equal(lab, yb)
            np.testing.assert_allclose(out, model.predict_on_batch(xb), rtol=1e-5, atol=1e-6)
    # JAX: one compile per padded shape (7 batches, 7 lengths), none in the second run
    assert counts[1] == counts[0] and 1 <= counts[0] <= _most_compiles(7)


# -- lifecycle in fit ---------------------------------------------------------

def test_callbacks_placed_before_the_runner_see_its_results(data, tmp_path):
    (x, y), (xv, yv) = data
    model = dense_classifier(lr=0.0)  # nothing learns: the loss never improves
    recorder = Recorder()
    path = tmp_path / "log.csv"
    callbacks = [
        recorder,
        keras.callbacks.EarlyStopping(monitor="validation_loss", mode="min", patience=1),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="validation_loss",
                                        mode="min", save_best_only=True),
        keras.callbacks.CSVLogger(str(path)),
        InferenceRunner(batched(xv, yv, 16), [ScalarStats("loss"), ClassificationError()]),  # last on purpose
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(batched(x, y, 64), epochs=10, verbose=0, callbacks=callbacks)
    # ModelCheckpoint and EarlyStopping warn when their monitor is missing from the logs
    assert not [w for w in caught if "validation_loss" in str(w.message)], [str(w.message) for w in caught]
    assert len(history.history["validation_loss"]) == 2  # EarlyStopping saw it: stopped after patience
    expected = _np_sparse_ce(model.predict(xv, verbose=0), yv).mean()
    assert [logs["validation_loss"] for logs in recorder.epoch_logs] == pytest.approx([expected] * 2, rel=1e-5)
    rows = list(csv.DictReader(open(path)))
    assert [float(r["validation_loss"]) for r in rows] == pytest.approx([expected] * 2, rel=1e-5)
    assert (tmp_path / "best.keras").exists()


def test_on_test_hooks_fire_around_each_run_before_epoch_end(data):
    (x, y), (xv, yv) = data
    recorder = Recorder()
    dense_classifier().fit(batched(x, y, 64), epochs=2, verbose=0, callbacks=[
        recorder, InferenceRunner(batched(xv, yv, 16), ScalarStats("loss"), steps_per_execution=2)])
    assert recorder.events == ["test_begin", "test_batch", "test_end", "epoch_end"] * 2


def test_swap_ema_weights_validates_the_ema_weights_like_keras(data):
    # The same fit reports Keras's own val_loss (validation_data=) and the
    # runner's validation_loss: SwapEMAWeights swaps for both.
    (x, y), (xv, yv) = data
    raw = []

    class RawWeights(keras.callbacks.Callback):  # outside on_test_*: the trained weights
        def on_epoch_end(self, epoch, logs=None):
            raw.append(self.model.get_weights())

    model = dense_classifier(optimizer=keras.optimizers.Adam(0.05, use_ema=True, ema_momentum=0.9))
    history = model.fit(batched(x, y, 32), epochs=2, verbose=0, validation_data=batched(xv, yv, 16), callbacks=[
        keras.callbacks.SwapEMAWeights(), InferenceRunner(batched(xv, yv, 16), [ScalarStats("loss")]), RawWeights()])
    np.testing.assert_allclose(history.history["validation_loss"], history.history["val_loss"], rtol=1e-5)
    # fit ends by writing the EMA weights into the model
    np.testing.assert_allclose(history.history["validation_loss"][-1],
                               model.evaluate(batched(xv, yv, 16), verbose=0), rtol=1e-5)
    plain = dense_classifier()
    plain.set_weights(raw[-1])
    raw_loss = plain.evaluate(batched(xv, yv, 16), verbose=0)
    assert abs(raw_loss - history.history["val_loss"][-1]) > 1e-3, "EMA and raw weights should differ here"


def test_runner_reused_in_two_fits_validates_each_model(data):
    (x, y), (xv, yv) = data
    runner = InferenceRunner(batched(xv, yv, 16), [ScalarStats("loss"), ClassificationError()])
    first, second = dense_classifier(seed=1), dense_classifier(seed=2, hidden=12, lr=0.1)
    for model in (first, second):
        history = model.fit(batched(x, y, 64), epochs=1, verbose=0, callbacks=[runner])
        np.testing.assert_allclose(history.history["validation_loss"][0],
                                   model.evaluate(batched(xv, yv, 16), verbose=0), rtol=1e-5)
        assert history.history["validation_error"][0] == pytest.approx(
            np.mean(model.predict(xv, verbose=0).argmax(1) != yv))
    # The second model's own step (JAX: full batches in calls of 1 and 4, the
    # partial last one alone), not added to the first model's
    assert 1 <= runner.tracing_count <= _most_compiles(3)
    assert runner.model is second


def test_standalone_runner_outside_fit(data):
    (_, _), (xv, yv) = data
    model = dense_classifier()
    runner = InferenceRunner(batched(xv, yv, 16), [ScalarStats("loss")])
    runner.set_model(model)
    results = runner.trigger()
    np.testing.assert_allclose(results["validation_loss"], model.evaluate(batched(xv, yv, 16), verbose=0), rtol=1e-5)
    assert runner.trigger() == results


def test_key_taken_by_keras_validation_metrics_raises_naming_it(data):
    (x, y), (xv, yv) = data
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, activation="sigmoid")])
    # (named: Keras numbers a metric class's default name within a process, precision_1, ...)
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=[keras.metrics.Precision(name="precision")])
    yb, yvb = (y % 2).astype("float32"), (yv % 2).astype("float32")
    with pytest.raises(ValueError, match=r"reports \['val_precision'\].*already hold"):
        model.fit(batched(x, yb, 64), epochs=1, verbose=0, validation_data=batched(xv, yvb, 16),
                  callbacks=[InferenceRunner(batched(xv, yvb, 16), BinaryClassificationStats("pred", "label"))])


def test_publish_refuses_to_replace_a_key():
    runner = InferenceRunner([(np.zeros((2, 8), "float32"), np.zeros(2, "int32"))], ScalarStats("loss"))
    logs = {"validation_loss": 1.0}
    with pytest.raises(ValueError, match="'validation_loss'"):
        runner.publish({"validation_loss": 2.0}, logs)
    assert logs == {"validation_loss": 1.0}
    runner.publish({"validation_error": 0.5}, logs)
    assert logs == {"validation_loss": 1.0, "validation_error": 0.5}


def test_progress_bar_quiet_when_not_a_tty(data, capsys):
    (x, y), (xv, yv) = data
    dense_classifier().fit(batched(x, y, 64), epochs=1, verbose=0, callbacks=[InferenceRunner(batched(xv, yv, 8), ScalarStats("loss"))])
    captured = capsys.readouterr()
    assert "InferenceTower" not in captured.out + captured.err


def test_device_argument_runs_there(data):
    (_, _), (xv, yv) = data
    model = dense_classifier()
    runner = InferenceRunner(batched(xv, yv, 10), ClassificationError(), device="/cpu:0")
    runner.set_model(model)
    assert runner.trigger()["validation_error"] == pytest.approx(np.mean(model.predict(xv, verbose=0).argmax(1) != yv))


class CountingReset:
    """A tensorpack-style DataFlow: __iter__, __len__, reset_state()."""

    def __init__(self, x, y, batch, length=None):
        self.x, self.y, self.batch, self.resets, self.length = x, y, batch, 0, length

    def reset_state(self):
        self.resets += 1

    def __len__(self):
        return self.length if self.length is not None else -(-len(self.x) // self.batch)

    def __iter__(self):
        for i in range(0, len(self.x), self.batch):
            yield [self.x[i:i + self.batch], self.y[i:i + self.batch]]


def test_dataflow_reset_once_and_reiterated_each_epoch(data):
    (x, y), (xv, yv) = data
    df = CountingReset(xv, yv, 16)
    model = dense_classifier()
    history = model.fit(batched(x, y, 64), epochs=2, verbose=0, callbacks=[
        InferenceRunner(df, [ScalarStats("loss"), ClassificationError()])])
    assert df.resets == 1
    assert history.history["validation_error"][-1] == pytest.approx(
        np.mean(model.predict(xv, verbose=0).argmax(1) != yv))


def test_len_differs_from_what_it_yields_warns(data):
    (_, _), (xv, yv) = data
    runner = InferenceRunner(CountingReset(xv, yv, 16, length=9), ScalarStats("loss"))
    runner.set_model(dense_classifier())
    with pytest.warns(RuntimeWarning, match="reports 9 batches .* but yielded 7"):
        runner.trigger()
    assert runner.num_samples_last_run == N_VAL


# -- errors -------------------------------------------------------------------

def _tiny_batches():
    x, y = random_data(40, 3)
    return [(x[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8)]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"infs": "loss"}, ValueError, "must be an Inferencer or a non-empty list"),
    ({"infs": [ScalarStats("loss"), "loss"]}, TypeError, "infer_callbacks.Inferencer"),
    ({"infs": []}, ValueError, "non-empty list"),
    ({"infs": [ClassificationError(), ClassificationError("wrong-top5")]}, ValueError, "same key 'validation_error'"),
    ({"steps_per_execution": 0}, ValueError, "steps_per_execution=0"),
    ({"tower_func": 3}, TypeError, "`tower_func` must be callable"),
    ({"on_nonfinite": "ignore"}, ValueError, "on_nonfinite='ignore'"),
    ({"device": "/gpu:7"}, ValueError, r"'/gpu:7' does not exist.*Available devices: \[.*CPU:0"),
    ({"input": 7}, TypeError, "`input` must be"),
    ({"input": tf.data.Dataset.range(0).batch(2)}, ValueError, "empty"),
    ({"input": tf.data.Dataset.range(4).batch(2).repeat()}, ValueError, "infinite"),
    ({"input": (b for b in [])}, TypeError, "one-shot iterator"),
])
def test_bad_arguments_raise_at_construction(kwargs, error, match):
    args = {"input": _tiny_batches(), "infs": ScalarStats("loss")}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        InferenceRunner(args.pop("input"), args.pop("infs"), **args)


def test_a_backend_without_an_engine_is_refused_at_construction(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")  # Keras's numpy backend: no engine here
    with pytest.raises(RuntimeError, match="KERAS_BACKEND='numpy'.*'jax', 'tensorflow', 'torch'"):
        InferenceRunner(_tiny_batches(), ScalarStats("loss"))


def test_unbatched_dataset_is_refused_before_training():
    x, y = random_data(10, 0)
    runner = InferenceRunner(tf.data.Dataset.from_tensor_slices((x, y)), ScalarStats("loss"))  # no .batch()
    runner.set_model(dense_classifier())
    with pytest.raises(ValueError, match=r"looks unbatched.*\.batch\(64\)"):
        runner.setup()


class Flaky(Inferencer):
    """Raises once in the given hook, then behaves."""

    def __init__(self, hook):
        self.hook, self.raised = hook, False

    def _maybe(self, hook):
        if hook == self.hook and not self.raised:
            self.raised = True
            raise KeyError("flaky")

    def _before_inference(self):
        self._maybe("_before_inference")
        self.total, self.calls = 0.0, 0

    def _get_fetches(self):
        return ["label"]

    def _on_fetches(self, results):
        self.calls += 1
        if self.calls == 2:
            self._maybe("_on_fetches")
        self.total += float(results[0].sum())

    def _after_inference(self):
        self._maybe("_after_inference")
        return {"label_sum": self.total}


@pytest.mark.parametrize("hook", ["_before_inference", "_on_fetches", "_after_inference"])
def test_inferencer_error_names_the_inferencer_and_leaves_the_runner_usable(hook):
    batches = _tiny_batches()
    runner = InferenceRunner(batches, [Flaky(hook), ScalarStats("loss")], steps_per_execution=2)
    runner.set_model(dense_classifier())
    with pytest.raises(KeyError, match="flaky") as info:
        runner.trigger()
    notes = getattr(info.value, "__notes__", [])
    where = "validation batch 2" if hook == "_on_fetches" else hook.lstrip("_")
    assert any("Flaky" in n and where in n for n in notes), notes
    assert_step_threads_end()
    assert runner.trigger()["label_sum"] == sum(int(b[1].sum()) for b in batches)
    assert runner.num_samples_last_run == 40


def test_input_error_names_the_batch_and_stops_the_step_thread():
    def flow():
        for i in range(6):
            if i == 4:
                raise OSError("disk went away")
            yield np.full((3, 8), i, "float32"), np.zeros(3, "int32")

    runner = InferenceRunner(flow, [ScalarStats("loss")], steps_per_execution=8)
    runner.set_model(dense_classifier())
    with pytest.raises(Exception, match="disk went away") as info:
        runner.trigger()
    assert any("validation batch 5" in note for note in getattr(info.value, "__notes__", []))
    assert_step_threads_end()


def test_duplicate_keys_at_run_time():
    class Same(Inferencer):
        def _get_fetches(self):
            return ["label"]

        def _on_fetches(self, results):
            pass

        def _after_inference(self):
            return {"validation_x": 1.0}

    runner = InferenceRunner(_tiny_batches(), [Same(), Same()])
    runner.set_model(dense_classifier())
    with pytest.raises(ValueError, match="same key 'validation_x'"):
        runner.trigger()


def _nan_tower(x, label):
    loss = keras.ops.sum(x, axis=1)
    return {"loss": keras.ops.where(keras.ops.equal(label, 0), float("nan"), loss)}


def test_nonfinite_results_warn_and_training_goes_on(data):
    (x, y), _ = data
    with pytest.warns(RuntimeWarning, match="NaN"):
        history = dense_classifier().fit(batched(x, y, 64), epochs=2, verbose=0, callbacks=[
            InferenceRunner(_tiny_batches(), ScalarStats("loss"), tower_func=_nan_tower)])
    assert len(history.history["validation_loss"]) == 2 and np.isnan(history.history["validation_loss"]).all()


def test_nonfinite_results_can_raise_instead():
    runner = InferenceRunner(_tiny_batches(), ScalarStats("loss"), tower_func=_nan_tower, on_nonfinite="raise")
    runner.set_model(dense_classifier())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FloatingPointError, match="validation_loss"):
            runner.trigger()


_INTERRUPT = r"""
import os, signal, sys, threading
import numpy as np, keras, tensorflow as tf
from infer_callbacks import Inferencer, InferenceRunner, ScalarStats

# A suite started in the background (`nohup pytest ... &`) hands its children
# SIGINT ignored: set the handler before sending ourselves one.
signal.signal(signal.SIGINT, signal.default_int_handler)
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
train = tf.data.Dataset.from_tensor_slices((np.zeros((16, 5), "float32"), np.zeros(16, "int32"))).batch(8)


def endless():  # would validate for a very long time if nothing stopped it
    for i in range(10 ** 6):
        yield np.full((4, 5), i % 7, "float32"), np.zeros(4, "int32")


class Interrupt(Inferencer):
    def __init__(self, how):
        self.how = how

    def _get_fetches(self):
        return ["label"]

    def _before_inference(self):
        self.calls = 0

    def _on_fetches(self, results):
        self.calls += 1
        if self.calls == 3:
            if self.how == "raise":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C


for how in ("raise", "signal"):
    runner = InferenceRunner(endless, [Interrupt(how), ScalarStats("loss")], steps_per_execution=4)
    try:
        model.fit(train, epochs=1, verbose=0, callbacks=[runner])
        print("not interrupted", how, flush=True)
    except KeyboardInterrupt:
        for t in threading.enumerate():
            if t.name == "infer_callbacks-step":
                t.join(timeout=60)
        alive = [t.name for t in threading.enumerate() if t.name == "infer_callbacks-step" and t.is_alive()]
        print("interrupted", how, alive, flush=True)
"""


def test_keyboard_interrupt_in_an_inferencer_stops_the_run():
    # A fresh process under a hard timeout: a hang fails the test instead of the suite.
    proc = run_python(_INTERRUPT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "interrupted raise []" in proc.stdout and "interrupted signal []" in proc.stdout, proc.stdout


def test_after_fit_a_standalone_run_leaves_that_fits_callbacks_alone(data):
    (x, y), (xv, yv) = data
    recorder = Recorder()
    runner = InferenceRunner(batched(xv, yv, 16), ScalarStats("loss"))
    dense_classifier().fit(batched(x, y, 64), epochs=1, verbose=0, callbacks=[recorder, runner])
    events = list(recorder.events)
    runner.trigger()  # fit is over: its callbacks get no on_test_* any more
    assert recorder.events == events
