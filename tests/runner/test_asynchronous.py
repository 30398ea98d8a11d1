"""InferenceRunner(asynchronous=True): validation on a snapshot while training
goes on. Every number is compared with Keras's evaluate on the weights the
model had at the end of the epoch measured (recorded by a callback)."""

from __future__ import annotations

import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_python
from infer_callbacks import (
    DataParallelInferenceRunner,
    Inferencer,
    InferenceRunner,
    MinSaver,
    PeriodicTrigger,
    ScalarStats,
)
from infer_callbacks.checkpoints import any_format as checkpoint  # either format (Keras files on JAX)


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = rng.integers(0, 3, size=n).astype("int32")
    return x, y


def _model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class Weights(keras.callbacks.Callback):
    """The model's weights at every epoch end (1-based), BatchNorm statistics too."""

    def __init__(self):
        super().__init__()
        self.at = {}

    def on_epoch_end(self, epoch, logs=None):
        self.at[epoch + 1] = [w.numpy() for w in self.model.weights]


def _evaluate_at(model, weights, x, y):
    current = [w.numpy() for w in model.weights]
    model.set_weights(weights)
    try:
        return model.evaluate(x, y, batch_size=len(x), verbose=0)
    finally:
        model.set_weights(current)


def test_every_epoch_is_measured_on_its_own_weights_and_the_last_reaches_history():
    x, y = _data()
    model = _model()
    weights = Weights()
    runner = InferenceRunner(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), ScalarStats("loss"),
                             asynchronous=True)
    history = model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[weights, runner])
    reports = runner.pop_reports()
    assert sorted(r.epoch_num for r in reports) == [1, 2, 3, 4]
    for report in reports:
        expected = _evaluate_at(model, weights.at[report.epoch_num], x, y)
        assert report.scalars["validation_loss"] == pytest.approx(expected, rel=1e-5)
    # History: every result that reached logs names its epoch; the last is the last epoch's.
    assert history.history["validation_epoch"][-1] == 4
    assert history.history["validation_loss"][-1] == pytest.approx(
        _evaluate_at(model, weights.at[4], x, y), rel=1e-5)
    for epoch, value in zip(history.history["validation_epoch"], history.history["validation_loss"]):
        assert value == pytest.approx(_evaluate_at(model, weights.at[epoch], x, y), rel=1e-5)


def test_asynchronous_numbers_equal_a_synchronous_run_on_the_same_weights():
    x, y = _data()
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(25)
    sync_model, async_model = _model(), _model()
    sync = InferenceRunner(val, ScalarStats("loss"))
    background = InferenceRunner(val, ScalarStats("loss"), asynchronous=True)
    sync_model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False, callbacks=[sync])
    async_model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False, callbacks=[background])
    by_epoch = {r.epoch_num: r.scalars for r in background.pop_reports()}
    for report in sync.pop_reports():
        assert by_epoch[report.epoch_num]["validation_loss"] == pytest.approx(
            report.scalars["validation_loss"], rel=1e-6)


def test_the_saver_keeps_the_weights_that_were_validated(tmp_path):
    x, y = _data()
    model = _model()
    weights = Weights()
    runner = InferenceRunner(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), ScalarStats("loss"),
                             asynchronous=True)
    saver = MinSaver("validation_loss", checkpoint_dir=tmp_path)
    model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[saver, weights, runner])
    restored = _model()
    checkpoint.restore(restored, saver.checkpoint_path)
    for got, want in zip(restored.weights, weights.at[saver.best_epoch]):
        np.testing.assert_array_equal(got.numpy(), want)


class Boom(Inferencer):
    def __init__(self, at_epoch):
        self.at_epoch = at_epoch

    def _get_fetches(self):
        return ["loss"]

    def _on_fetches(self, results):
        if self.epoch_num == self.at_epoch:
            raise ValueError("broken on purpose")


def test_an_error_in_the_background_surfaces_at_a_later_epoch_end_naming_the_epoch():
    x, y = _data()
    runner = InferenceRunner(tf.data.Dataset.from_tensor_slices((x, y)).batch(32),
                             [ScalarStats("loss"), Boom(at_epoch=1)], asynchronous=True)
    with pytest.raises(ValueError, match="broken on purpose") as info:
        _model().fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[runner])
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "asynchronous validation of epoch 1" in notes


def test_periodic_trigger_and_data_parallel_asynchronous():
    x, y = _data()
    model = _model()
    weights = Weights()
    runner = DataParallelInferenceRunner(tf.data.Dataset.from_tensor_slices((x, y)).batch(32),
                                         ScalarStats("loss"), gpus=["/cpu:0"], asynchronous=True)
    model.fit(x, y, batch_size=16, epochs=4, verbose=0,
              callbacks=[weights, PeriodicTrigger(runner, every_k_epochs=2)])
    runner.on_train_end()  # what is still running finishes
    reports = runner.pop_reports()
    assert sorted(r.epoch_num for r in reports) == [2, 4]
    for report in reports:
        assert report.scalars["validation_loss"] == pytest.approx(
            _evaluate_at(model, weights.at[report.epoch_num], x, y), rel=1e-5)


def test_snapshot_is_one_copy_of_the_weights():
    x, y = _data()
    model = _model()
    runner = InferenceRunner(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), ScalarStats("loss"),
                             asynchronous=True)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[runner])
    weight_bytes = sum(w.numpy().nbytes for w in model.weights)
    assert runner.snapshot_nbytes == weight_bytes


def test_ctrl_c_stops_training_and_the_background_run():
    """A real SIGINT, sent once the background validation is under way, ends
    fit with KeyboardInterrupt and the process exits (the background thread
    is a daemon), whether training was running or waiting for that run."""
    code = textwrap.dedent("""
        import os, signal, threading, time, numpy as np, keras, tensorflow as tf
        from infer_callbacks import InferenceRunner, Inferencer, ScalarStats
        # A suite started in the background (`nohup pytest ... &`) hands its
        # children SIGINT ignored: set the handler before sending ourselves one.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        started = threading.Event()

        class Slow(Inferencer):  # a background validation that would take minutes
            def _get_fetches(self):
                return ["loss"]
            def _on_fetches(self, results):
                started.set()
                time.sleep(0.2)

        def interrupt():
            started.wait()
            os.kill(os.getpid(), signal.SIGINT)

        x = np.zeros((64, 4), "float32"); y = np.zeros(64, "int32")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        val = tf.data.Dataset.from_tensor_slices((x, y)).batch(1).repeat(100)
        runner = InferenceRunner(val, [ScalarStats("loss"), Slow()], asynchronous=True)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            model.fit(x, y, epochs=1000, verbose=0, callbacks=[runner])
        except KeyboardInterrupt:
            print("INTERRUPTED", flush=True)
    """)
    proc = run_python(code, timeout=300)
    assert "INTERRUPTED" in proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.tensorflow_only("the trainer host (TrainConfig, launch_train_with_config) is TensorFlow-only")
def test_trainer_host_runs_asynchronous_validation():
    from infer_callbacks import SimpleTrainer, TrainConfig, launch_train_with_config

    x, y = _data()
    weights = Weights()
    runner = InferenceRunner(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), ScalarStats("loss"),
                             asynchronous=True)
    history = launch_train_with_config(TrainConfig(
        model=_model, data=tf.data.Dataset.from_tensor_slices((x, y)).batch(16), max_epoch=3, verbose=0,
        callbacks=[weights, runner]), SimpleTrainer())
    model = _model()
    reports = runner.pop_reports()
    assert sorted(r.epoch_num for r in reports) == [1, 2, 3]
    for report in reports:
        assert report.scalars["validation_loss"] == pytest.approx(
            _evaluate_at(model, weights.at[report.epoch_num], x, y), rel=1e-5)
    assert history.history["validation_epoch"][-1] == 3


@pytest.mark.tensorflow_only("several workers: tf.distribute.MultiWorkerMirroredStrategy")
def test_asynchronous_across_workers_is_refused_before_training():
    code = textwrap.dedent("""
        import json, os, socket
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}"]},
                                              "task": {"type": "worker", "index": 0}})
        import tensorflow as tf
        from infer_callbacks.runner.engine.tensorflow import binding
        binding.spans_workers = lambda strategy: True  # one process standing for several workers
        import numpy as np, keras
        from infer_callbacks import InferenceRunner, ScalarStats
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        with strategy.scope():
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
            model.compile("sgd", "mse")
        runner = InferenceRunner([(np.zeros((2, 3), "float32"), np.zeros((2, 1), "float32"))],
                                 ScalarStats("loss"), asynchronous=True)
        runner.set_model(model)
        try:
            runner.setup()
        except ValueError as e:
            print("REFUSED", e)
    """)
    proc = run_python(code, timeout=300)
    assert "REFUSED" in proc.stdout and "SidecarEvaluator" in proc.stdout, proc.stderr[-3000:]
