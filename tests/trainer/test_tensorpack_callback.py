"""tensorpack's ``Callback`` base class: a ported EvalCallback (FasterRCNN's
shape: predictors built in ``_setup_graph`` with ``device=i``, evaluation in
``_trigger``) runs in ``model.fit`` and in the trainer host, its hooks in
tensorpack's order with tensorpack's ``epoch_num`` / ``global_step``, and its
predictions equal numpy's forward pass on the weights of that moment."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.models import classifier
from helpers.trainer import XV, Linear
from infer_callbacks import Callback, PeriodicTrigger, SimpleTrainer, TrainConfig, launch_train_with_config

pytestmark = pytest.mark.tensorflow_only("the ModelDesc trainer host needs TensorFlow")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(48, 4)).astype("float32")
Y = (X[:, 0] > 0).astype("int32")


def dense_model():
    return classifier(2, seed=None, optimizer=keras.optimizers.SGD(0.5))


class EvalCallback(Callback):
    """A tensorpack callback body: no super().__init__(), predictors in _setup_graph."""

    def __init__(self, x_val, in_names, out_names, devices=(0,)):
        self._x, self._in_names, self._out_names, self._devices = x_val, in_names, out_names, devices
        self.events, self.results = [], []

    def _log(self, hook):
        self.events.append((hook, self.epoch_num, self.global_step))

    def _setup_graph(self):
        self.predictors = [self.trainer.get_predictor(self._in_names, self._out_names, device=d)
                           for d in self._devices]
        self._log("setup_graph")

    def _before_train(self):
        self._log("before_train")

    def _before_epoch(self):
        self._log("before_epoch")

    def _trigger_step(self):
        self._log("trigger_step")

    def _after_epoch(self):
        self._log("after_epoch")

    def _trigger_epoch(self):
        self._log("trigger_epoch")
        self.trigger()

    def _trigger(self):
        self._log("trigger")
        (out,) = self.predictors[-1](self._x)
        self.results.append((out, [w.copy() for w in self.trainer.model.get_weights()]))
        self.trainer.monitors.put_scalar("val_mean_output", out.mean())

    def _after_train(self):
        self._log("after_train")


def expected_events(epochs, steps):
    events = [("setup_graph", 0, 0), ("before_train", 0, 0)]
    for e in range(1, epochs + 1):
        events.append(("before_epoch", e, (e - 1) * steps))
        events += [("trigger_step", e, (e - 1) * steps + s) for s in range(1, steps + 1)]
        events += [(hook, e, e * steps) for hook in ("after_epoch", "trigger_epoch", "trigger")]
    return events + [("after_train", epochs, epochs * steps)]


def test_ported_eval_callback_in_fit():
    model = dense_model()
    cb = EvalCallback(X, ["input"], ["output"], devices=(0, 1))
    with pytest.warns(UserWarning) as caught:  # CPU only: soft placement, as tensorpack
        history = model.fit(X, Y, batch_size=16, epochs=2, verbose=0, callbacks=[cb])
    assert [("no GPU 0" in str(w.message), "no GPU 1" in str(w.message)) for w in caught] == [
        (True, False), (False, True)]  # one warning per predictor, built once (in _setup_graph)
    assert cb.events == expected_events(epochs=2, steps=3)
    assert cb.chief_only
    for out, (w, b) in cb.results:
        np.testing.assert_allclose(out, X.astype(np.float64) @ w + b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(cb.results[0][0], cb.results[1][0])  # it sees the current weights
    # float32 outputs of two code paths (different batching): round-off, not a tolerance of the library
    np.testing.assert_allclose(cb.results[-1][0], model.predict(X, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(history.history["val_mean_output"],
                               [out.mean() for out, _ in cb.results], rtol=1e-5)
    assert cb.trainer.monitors.get_latest("val_mean_output") == pytest.approx(cb.results[-1][0].mean())


def test_ported_eval_callback_in_the_trainer_host():
    desc = Linear()
    cb = EvalCallback(XV, ["x"], ["logits"], devices=("/cpu:0",))
    data = tf.data.Dataset.from_tensor_slices((XV[:96], np.zeros(96, np.int32))).batch(32)
    trainer = SimpleTrainer()
    launch_train_with_config(TrainConfig(model=desc, data=data, max_epoch=2, verbose=0, callbacks=[cb]),
                             trainer)
    assert cb.events == expected_events(epochs=2, steps=3)
    for out, (w, b) in cb.results:
        np.testing.assert_allclose(out, XV.astype(np.float64) @ w + b, rtol=1e-4, atol=1e-5)
    (latest,) = trainer.get_predictor(["x"], ["logits"], device=-1)(XV)  # -1: '/cpu:0', as tensorpack
    np.testing.assert_allclose(cb.results[-1][0], latest, rtol=1e-6)


def test_periodic_trigger_drives_trigger_on_steps():
    cb = EvalCallback(X, ["input"], ["output"], devices=("/cpu:0",))
    dense_model().fit(X, Y, batch_size=16, epochs=2, verbose=0,
                      callbacks=[PeriodicTrigger(cb, every_k_steps=2)])
    assert [e for e in cb.events if e[0] in ("setup_graph", "before_train", "trigger")] == [
        ("setup_graph", 0, 0), ("before_train", 0, 0), ("trigger", 1, 2), ("trigger", 2, 4),
        ("trigger", 2, 6)]


def test_chief_only_by_default(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 1}}))
    quiet = EvalCallback(X, ["input"], ["output"], devices=("/cpu:0",))
    everywhere = EvalCallback(X, ["input"], ["output"], devices=("/cpu:0",)).set_chief_only(False)
    dense_model().fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[quiet, everywhere])
    assert quiet.events == [] and not quiet.trainer.is_chief
    assert everywhere.events == expected_events(epochs=1, steps=3)


def test_trainer_before_training_says_when_it_is_set():
    with pytest.raises(AttributeError, match="when training starts"):
        EvalCallback(X, ["input"], ["output"]).trainer
