"""tensorpack's ``set_chief_only()`` on every callback of the package, and
what the flag does where it does something (``infer_callbacks/_util/chief.py``)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.models import classifier
from infer_callbacks import (DataParallelInferenceRunner, InferenceRunner, JSONWriter, MaxSaver, MinSaver,
                             ModelSaver, Monitors, PeriodicTrigger, ScalarPrinter, ScalarStats)

pytestmark = pytest.mark.tensorflow_only("multi-worker tf.distribute")


def _val():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 4)).astype("float32")
    y = rng.integers(0, 3, size=20).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def _model():
    return classifier(optimizer=keras.optimizers.SGD(0.01))


CALLBACKS = {  # name -> (constructor, tensorpack-compatible default)
    "InferenceRunner": (lambda tmp: InferenceRunner(_val(), ScalarStats("loss")), False),
    "DataParallelInferenceRunner": (
        lambda tmp: DataParallelInferenceRunner(_val(), ScalarStats("loss"), gpus=["/cpu:0"]), False),
    "PeriodicTrigger(runner)": (
        lambda tmp: PeriodicTrigger(InferenceRunner(_val(), ScalarStats("loss")), every_k_epochs=2), False),
    "PeriodicTrigger(saver)": (lambda tmp: PeriodicTrigger(ModelSaver(tmp), every_k_epochs=2), True),
    "Monitors": (lambda tmp: Monitors([ScalarPrinter()]), True),
    "ModelSaver": (lambda tmp: ModelSaver(tmp), True),
    "MinSaver": (lambda tmp: MinSaver("validation_loss", checkpoint_dir=tmp), True),
    "MaxSaver": (lambda tmp: MaxSaver("validation_accuracy", checkpoint_dir=tmp), True),
}


@pytest.mark.parametrize("name", sorted(CALLBACKS))
def test_set_chief_only_returns_the_callback_and_sets_the_flag(name, tmp_path):
    make, default = CALLBACKS[name]
    callback = make(str(tmp_path))
    assert callback.chief_only is default
    assert callback.set_chief_only(not default) is callback
    assert callback.chief_only is (not default)
    assert callback.set_chief_only() is callback and callback.chief_only is True  # v=True, as tensorpack


def test_a_trigger_around_a_runner_set_not_chief_only_validates_in_fit():
    runner = InferenceRunner(_val(), ScalarStats("loss")).set_chief_only(False)  # tensorpack's Horovod example
    model = _model()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.integers(0, 3, size=16).astype("int32")
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0,
                        callbacks=[PeriodicTrigger(runner, every_k_epochs=1)])
    assert len(history.history["validation_loss"]) == 2
    assert history.history["validation_loss"][-1] == pytest.approx(model.evaluate(_val(), verbose=0), rel=1e-5)


@pytest.mark.parametrize("chief_only, writes_file", [(True, False), (False, True)])
def test_monitors_on_a_worker_other_than_the_chief(chief_only, writes_file, tmp_path, monkeypatch, capsys):
    """Worker 1 of two (TF_CONFIG): by default its Monitors print only;
    set_chief_only(False) runs its file writers too."""
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    monitors = Monitors([ScalarPrinter(), JSONWriter(tmp_path)]).set_chief_only(chief_only)
    model = _model()
    model.fit(np.zeros((4, 4), "float32"), np.zeros(4, "int32"), epochs=1, verbose=0, callbacks=[monitors])
    assert (tmp_path / "stats.json").exists() is writes_file
    assert "loss" in capsys.readouterr().out
