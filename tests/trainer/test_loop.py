"""The trainer's loop: epochs and steps as in tensorpack, Keras callbacks
unchanged and ordered (validation producers first), DataFlow input, stop
training, one runner across runs, the trainer's predictor."""

from __future__ import annotations

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.trainer import (W0, XT, XV, YT, YV, Linear, Recorder, keras_model, batches_of, ce_and_logits,
                          numpy_sgd, train_ds, val_ds)
from infer_callbacks import (ClassificationError, InferenceRunner, ScalarStats, SimpleTrainer, TrainConfig,
                             get_current_tower_context, launch_train_with_config)

pytestmark = pytest.mark.tensorflow_only("the ModelDesc trainer host needs TensorFlow")


def test_epochs_and_steps_as_tensorpack():
    rec = Recorder()
    config = TrainConfig(model=Linear(), data=train_ds(), max_epoch=4, starting_epoch=3,
                         steps_per_epoch=5, verbose=0, callbacks=[rec])
    trainer = SimpleTrainer()
    history = launch_train_with_config(config, trainer)
    epochs = [i for name, i, _ in rec.calls if name == "epoch_begin"]
    assert epochs == [2, 3]  # tensorpack epochs 3 and 4 (1-based, inclusive)
    steps = [i for name, i, _ in rec.calls if name == "batch_end"]
    assert steps == list(range(5)) * 2
    assert len(history.history["loss"]) == 2
    assert int(trainer.model.optimizer.iterations.numpy()) == 10
    # The data is read on across epochs (13 batches, 10 steps): numpy on the same sequence.
    seq = batches_of(XT, YT, 32)[:10]
    w, b, _ = numpy_sgd(seq, 1)
    np.testing.assert_allclose(trainer.model.trainable_variables[0].numpy(), w, atol=2e-5)


def test_keras_callbacks_work_unchanged(tmp_path):
    rec = Recorder()
    early = keras.callbacks.EarlyStopping(monitor="validation_cost", mode="min", patience=1,
                                          min_delta=10.0)
    csv_path = tmp_path / "log.csv"
    config = TrainConfig(model=Linear(), data=train_ds(), max_epoch=10, verbose=0, callbacks=[
        early,  # before the runner: it still sees validation_cost
        keras.callbacks.CSVLogger(str(csv_path)),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "m.weights.h5"), save_weights_only=True),
        rec,
        InferenceRunner(val_ds(), ScalarStats("cost"), verbose=False),
    ])
    history = launch_train_with_config(config, SimpleTrainer())
    assert len(history.history["loss"]) == 2 and early.stopped_epoch == 1
    rows = list(csv.DictReader(open(csv_path)))
    assert [float(r["validation_cost"]) for r in rows] == pytest.approx(history.history["validation_cost"])
    assert (tmp_path / "m.weights.h5").exists()
    assert rec.calls[-1][0] == "train_end"


def test_model_function_and_stop_training():
    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.model.stop_training = True

    rec = Recorder()
    config = TrainConfig(model=lambda: Linear(), data=train_ds(), max_epoch=3, verbose=0, callbacks=[Stop(), rec])
    history = launch_train_with_config(config, SimpleTrainer())
    assert [i for n, i, _ in rec.calls if n == "batch_end"] == [0, 1, 2]
    assert len(history.history["loss"]) == 1


class DataFlow:
    """A tensorpack-style DataFlow: no len, reset_state() once."""

    def __init__(self):
        self.resets = 0

    def reset_state(self):
        self.resets += 1

    def __iter__(self):
        return iter(batches_of(XT, YT, 32))


def test_dataflow_input_and_batchnorm_untouched_by_validation():
    class WithBN(Linear):
        def __init__(self):
            super().__init__()
            self.bn = keras.layers.BatchNormalization()

        def build_graph(self, x, label):
            training = get_current_tower_context().is_training
            logits = self.net(self.bn(x, training=training), training=training)
            tf.identity(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) != label, tf.float32),
                        name="wrong-top1")
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits))

    flow, rec = DataFlow(), Recorder()
    runner = InferenceRunner(val_ds(), ClassificationError("wrong-top1"), verbose=False)
    model = WithBN()
    trainer = SimpleTrainer()
    launch_train_with_config(TrainConfig(model=model, dataflow=flow, max_epoch=2, verbose=0,
                                         callbacks=[rec, runner]), trainer)
    assert flow.resets == 1
    assert [i for n, i, _ in rec.calls if n == "batch_begin"] == list(range(13)) * 2  # no extra hook at the end
    moving = model.bn.moving_mean.numpy().copy()
    assert np.abs(moving).sum() > 0  # training updated it
    runner.trigger()
    np.testing.assert_array_equal(model.bn.moving_mean.numpy(), moving)  # validation did not
    assert len(trainer.model.weights) == 6


def test_keras_model_predictor():
    model = keras_model()
    trainer = SimpleTrainer()
    launch_train_with_config(TrainConfig(model=model, data=train_ds(), max_epoch=1, verbose=0), trainer)
    (out,) = trainer.get_predictor(["input"], ["output"])(XV)
    np.testing.assert_allclose(out, model.predict(XV, verbose=0), atol=1e-5)


class Producer(keras.callbacks.Callback):
    """A stand-in validation producer (anything with `pop_reports`)."""

    def __init__(self, key, order):
        super().__init__()
        self.key, self.order = key, order

    def pop_reports(self):
        return []

    def on_epoch_end(self, epoch, logs=None):
        self.order.append(self.key)
        logs[self.key] = float(epoch)


class Wrapper(keras.callbacks.Callback):
    def __init__(self, callback):
        super().__init__()
        self.callback = callback

    def on_epoch_end(self, epoch, logs=None):
        self.callback.on_epoch_end(epoch, logs)


class Reader(keras.callbacks.Callback):
    def __init__(self, order):
        super().__init__()
        self.order, self.seen = order, []

    def on_epoch_end(self, epoch, logs=None):
        self.order.append("reader")
        self.seen.append(sorted(logs))


def test_producers_run_first_in_their_order_and_callbacks_are_not_changed():
    order = []
    reader, a, b = Reader(order), Producer("a", order), Producer("b", order)
    callbacks = [reader, a, keras.callbacks.TerminateOnNaN(), Wrapper(b)]
    before = [dict(vars(c)) for c in callbacks]
    config = TrainConfig(model=Linear(), data=train_ds(), max_epoch=2, verbose=0, callbacks=callbacks)
    launch_train_with_config(config, SimpleTrainer())
    assert order == ["a", "b", "reader"] * 2
    assert reader.seen == [["a", "b", "loss"]] * 2
    assert config.callbacks == callbacks
    skip = ("model", "_model", "params", "order", "seen")  # what Keras sets, what the test records
    for cb, old in zip(callbacks, before):
        assert {k: v for k, v in vars(cb).items() if k not in skip} == {k: v for k, v in old.items() if k not in skip}


def test_one_runner_reused_by_two_runs_validates_each_runs_model():
    """Binding is per run: the second run validates the second model."""
    runner = InferenceRunner(val_ds(), [ScalarStats("cost")], verbose=False)
    results = []
    for scale in (1.0, 30.0):
        class Scaled(Linear):
            def __init__(self):
                super().__init__()
                self.net = keras.layers.Dense(10, kernel_initializer=keras.initializers.Constant(W0 * scale))

        trainer = SimpleTrainer()
        history = launch_train_with_config(TrainConfig(model=Scaled(), data=train_ds(), max_epoch=1, verbose=0,
                                                       callbacks=[runner]), trainer)
        kernel, bias = [v.numpy() for v in trainer.model.trainable_variables]
        ce, _ = ce_and_logits(kernel, bias, XV, YV)
        results.append((history.history["validation_cost"][-1], ce.mean()))
    for got, expected in results:
        assert got == pytest.approx(expected, rel=1e-5)
    assert results[0][1] != pytest.approx(results[1][1], rel=1e-3)
    assert runner.tower_func is None  # the trainer did not give it a tower
