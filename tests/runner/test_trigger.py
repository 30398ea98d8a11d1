"""PeriodicTrigger: when the wrapped callback runs, counted in epochs and in
global steps (``optimizer.iterations``), never timed."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.models import classifier
from infer_callbacks import Inferencer, InferenceRunner, PeriodicTrigger, ScalarStats


def _model(steps_per_execution=1):
    return classifier(optimizer=keras.optimizers.SGD(0.01), steps_per_execution=steps_per_execution)


def _ds(n, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = rng.integers(0, 3, size=n).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


VAL = _ds(20, 10, seed=1)


class WhenRun(Inferencer):
    """Records the run context of every run: the epoch and global step of the
    weights it measures."""

    def __init__(self):
        self.runs = []

    def _before_inference(self):
        self.runs.append((self.epoch_num, self.global_step))

    def _get_fetches(self):
        return ["label"]

    def _on_fetches(self, results):
        pass

    def _after_inference(self):
        return {"validation_runs": float(len(self.runs))}


class EpochLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))


@pytest.mark.not_on_backend("torch", reason="Keras's PyTorch trainer refuses steps_per_execution > 1")
@pytest.mark.parametrize("every_k_steps", [4, 3])
def test_every_k_steps_with_steps_per_execution(every_k_steps):
    # 2 epochs of 8 steps, 4 steps per training call: the trigger sees the
    # step count at 4, 8, 12, 16 and fires whenever a multiple of k was crossed.
    when = WhenRun()
    model = _model(steps_per_execution=4)
    trigger = PeriodicTrigger(InferenceRunner(VAL, when), every_k_steps=every_k_steps)
    model.fit(_ds(32, 4), epochs=2, verbose=0, callbacks=[trigger])
    assert int(model.optimizer.iterations.numpy()) == 16
    assert [step for _, step in when.runs] == [4, 8, 12, 16]
    assert [epoch for epoch, _ in when.runs] == [1, 1, 2, 2]
    reports = trigger.callback.pop_reports()
    assert [r.global_step for r in reports] == [4, 8, 12, 16]


def test_every_k_steps_counts_global_steps_across_fits():
    # every k-th *global* step, as in tensorpack: after 16 steps, the next
    # fit's 8 steps cross 18, 21 and 24.
    when = WhenRun()
    model = _model()
    model.fit(_ds(32, 2), epochs=1, verbose=0)
    model.fit(_ds(16, 2), epochs=1, verbose=0,
              callbacks=[PeriodicTrigger(InferenceRunner(VAL, when), every_k_steps=3)])
    assert [step for _, step in when.runs] == [18, 21, 24]


def test_every_k_epochs_and_before_train():
    when, seen = WhenRun(), EpochLogs()
    model = _model()
    model.fit(_ds(16, 4), epochs=4, verbose=0, callbacks=[
        seen, PeriodicTrigger(InferenceRunner(VAL, when), every_k_epochs=2, before_train=True)])
    assert when.runs == [(0, 0), (2, 8), (4, 16)]
    # the run before training lands in epoch 1's logs; then epochs 2 and 4
    assert [logs.get("validation_runs") for logs in seen.logs] == [1.0, 2.0, None, 3.0]


def test_step_results_reach_the_next_epoch_logs_once():
    when, seen = WhenRun(), EpochLogs()
    model = _model()
    model.fit(_ds(12, 4), epochs=3, verbose=0, callbacks=[
        seen, PeriodicTrigger(InferenceRunner(VAL, when), every_k_steps=4)])  # steps 4, 8 of 9
    assert [step for _, step in when.runs] == [4, 8]
    assert [logs.get("validation_runs") for logs in seen.logs] == [None, 1.0, 2.0]


class BestSaver(keras.callbacks.Callback):
    """MaxSaver-like: trigger(logs) keeps the best value of a monitored key."""

    def __init__(self, monitor):
        super().__init__()
        self.monitor, self.best, self.calls, self.epochs_begun = monitor, None, [], 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs_begun += 1

    def trigger(self, logs=None):
        value = logs[self.monitor]
        self.calls.append(value)
        if self.best is None or value > self.best:
            self.best = value


class EpochEndOnly(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append((epoch, dict(logs)))


def test_trigger_around_a_saver_placed_before_the_runner():
    saver, plain = BestSaver("validation_loss"), EpochEndOnly()
    runner = InferenceRunner(VAL, ScalarStats("loss"))
    model = _model()
    history = model.fit(_ds(16, 4), epochs=4, verbose=0, callbacks=[
        PeriodicTrigger(saver, every_k_epochs=2), PeriodicTrigger(plain, every_k_epochs=2), runner])
    losses = history.history["validation_loss"]
    assert saver.calls == [losses[1], losses[3]]  # the runner's results of epochs 2 and 4
    assert saver.best == max(losses[1], losses[3])
    assert saver.epochs_begun == 4  # the other hooks are forwarded as usual
    assert [(epoch, logs["validation_loss"]) for epoch, logs in plain.calls] == [(1, losses[1]), (3, losses[3])]


class TensorpackSaver(keras.callbacks.Callback):
    """tensorpack's signature: ``def trigger(self)``, reading the model."""

    def __init__(self):
        super().__init__()
        self.kernels = []

    def trigger(self):
        self.kernels.append(self.model.layers[0].kernel.numpy().copy())


class KernelAtEpochEnd(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.kernels = []

    def on_epoch_end(self, epoch, logs=None):
        self.kernels.append(self.model.layers[0].kernel.numpy().copy())


def test_trigger_without_arguments_runs_as_in_tensorpack():
    saver, every_epoch = TensorpackSaver(), KernelAtEpochEnd()
    _model().fit(_ds(16, 4), epochs=4, verbose=0,
                 callbacks=[PeriodicTrigger(saver, every_k_epochs=2), every_epoch])
    assert len(saver.kernels) == 2  # the weights after epochs 2 and 4
    for got, want in zip(saver.kernels, every_epoch.kernels[1::2]):
        np.testing.assert_array_equal(got, want)


def test_trigger_with_a_required_second_argument_is_refused():
    class TwoArgs(keras.callbacks.Callback):
        def trigger(self, logs, step):
            pass

    with pytest.raises(TypeError, match=r"trigger\(logs, step\).*give step a default"):
        PeriodicTrigger(TwoArgs(), every_k_epochs=1)


def test_an_epoch_trigger_does_nothing_per_batch():
    saver = TensorpackSaver()
    trigger = PeriodicTrigger(saver, every_k_epochs=2)
    trigger.on_train_batch_end(0, {"loss": 1.0})  # no model, no step to read: returns at once
    assert saver.kernels == []


def test_a_runner_adds_no_batch_hook():
    # Keras dispatches batch hooks asynchronously (on backends that allow
    # it) only when no callback overrides them (`_is_default`).
    hooks = ("on_train_batch_end", "on_train_batch_begin", "on_batch_end")
    runner = InferenceRunner(VAL, ScalarStats("loss"))
    assert all(getattr(getattr(runner, h), "_is_default", False) for h in hooks)


@pytest.mark.parametrize("kwargs, error, match", [
    ({}, ValueError, "needs a period"),
    ({"every_k_epochs": 0}, ValueError, "every_k_epochs=0"),
    ({"every_k_steps": -2}, ValueError, "every_k_steps=-2"),
    ({"every_k_steps": 2.5}, ValueError, "every_k_steps=2.5"),
    ({"every_k_epochs": True}, ValueError, "every_k_epochs=True"),
])
def test_bad_periods(kwargs, error, match):
    with pytest.raises(error, match=match):
        PeriodicTrigger(InferenceRunner(VAL, ScalarStats("loss")), **kwargs)


def test_not_a_callback():
    with pytest.raises(TypeError, match="keras.callbacks.Callback"):
        PeriodicTrigger(lambda: None, every_k_epochs=1)
