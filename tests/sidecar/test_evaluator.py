"""SidecarEvaluator: a training run writes checkpoints with ModelSaver, the
sidecar (here in this process; the command line: test_sidecar_cli.py)
evaluates each one in order, exactly once; its numbers equal Keras's and
numpy's on the weights recorded at each epoch end."""

from __future__ import annotations

from conftest import REPO
import glob
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import ClassificationError, ModelSaver, Monitors, ScalarStats
from infer_callbacks.monitors.callback import JSONWriter, MonitorWriter
from infer_callbacks.sidecar.evaluator import STATE_FILENAME, SidecarEvaluator

pytestmark = pytest.mark.tensorflow_only("TensorFlow checkpoints (JAX: tests/sidecar/test_keras_files.py)")

ROOT = REPO
STEPS_PER_EPOCH = 3  # 48 training samples, batch 16

_rng = np.random.default_rng(7)
X_TRAIN = _rng.normal(size=(48, 4)).astype("float32")
Y_TRAIN = _rng.integers(0, 3, 48)
X_VAL = _rng.normal(size=(40, 4)).astype("float32")
Y_VAL = _rng.integers(0, 3, 40)


# -- the user's functions (also named on the command line) -----------------

def build_model() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    return model


def val_data() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((X_VAL, Y_VAL)).batch(16)  # 16, 16, 8


# -- helpers ------------------------------------------------------------------

class _Record(keras.callbacks.Callback):
    """The weights at each epoch end (what the checkpoint of that epoch holds)."""

    def __init__(self, weights: dict):
        super().__init__()
        self.weights = weights

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1] = [np.array(w) for w in self.model.get_weights()]


def train(ckdir, epochs: int, weights: dict, *, initial_epoch: int = 0, model=None,
          max_to_keep: int = 10, extra=()) -> keras.Model:
    if model is None:
        keras.utils.set_random_seed(1)
        model = build_model()
    model.fit(X_TRAIN, Y_TRAIN, batch_size=16, epochs=epochs, initial_epoch=initial_epoch,
              shuffle=False, verbose=0,
              callbacks=[ModelSaver(ckdir, max_to_keep=max_to_keep), _Record(weights), *extra])
    return model


def reference(weights) -> dict:
    """numpy on the recorded weights (Dense-relu, Dense-softmax)."""
    w1, b1, w2, b2 = (np.asarray(w, "float64") for w in weights)
    logits = np.maximum(X_VAL @ w1 + b1, 0) @ w2 + b2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return {"validation_loss": float(np.mean(-np.log(probs[np.arange(len(Y_VAL)), Y_VAL]))),
            "validation_error": float(np.mean(np.argmax(probs, 1) != Y_VAL))}


def keras_reference(weights) -> float:
    """Keras's own evaluate on the recorded weights."""
    model = build_model()
    model.set_weights(weights)
    return model.evaluate(X_VAL, Y_VAL, batch_size=40, verbose=0)


def check_rows(rows, weights, epochs) -> None:
    assert [r["epoch_num"] for r in rows] == list(epochs)
    for r in rows:
        assert r["global_step"] == STEPS_PER_EPOCH * r["epoch_num"]
        expected = reference(weights[r["epoch_num"]])
        for key, value in expected.items():
            np.testing.assert_allclose(r[key], value, rtol=1e-5, atol=1e-7, err_msg=key)


def _epochs(stats_path) -> list[int]:
    try:
        with open(stats_path) as f:
            return [row["epoch_num"] for row in json.load(f)]
    except FileNotFoundError:
        return []


def stats(logdir) -> list[dict]:
    with open(os.path.join(logdir, "stats.json")) as f:
        return json.load(f)


def evaluator(ckdir, logdir, **kwargs) -> SidecarEvaluator:
    kwargs.setdefault("poll_seconds", 0.05)
    return SidecarEvaluator(build_model(), val_data(), [ScalarStats("loss"), ClassificationError()],
                            ckdir, logdir=logdir, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three epochs already written (and the 'finished' marker): copy it."""
    base = tmp_path_factory.mktemp("trained")
    weights: dict = {}
    train(base / "ckpt", 3, weights)
    return base / "ckpt", weights


@pytest.fixture
def ckdir(trained, tmp_path):
    src, _ = trained
    shutil.copytree(src, tmp_path / "ckpt")
    return tmp_path / "ckpt"


# -- in this process ------------------------------------------------------------

def test_max_evaluations_then_resume_numbers_equal_keras(ckdir, trained, tmp_path):
    weights, logdir = trained[1], tmp_path / "log"
    ev = evaluator(ckdir, logdir, max_evaluations=2)
    rows = ev.run()
    assert ev.stop_reason == "max_evaluations" and ev.last_evaluated == 6
    assert [r["checkpoint"] for r in rows] == ["ckpt-3", "ckpt-6"]
    check_rows(rows, weights, [1, 2])

    ev = evaluator(ckdir, logdir, monitors=Monitors([JSONWriter(logdir)]))  # a restart
    rows = ev.run()
    assert ev.stop_reason == "finished" and [r["checkpoint"] for r in rows] == ["ckpt-9"]
    check_rows(stats(logdir), weights, [1, 2, 3])
    np.testing.assert_allclose(rows[0]["validation_loss"], keras_reference(weights[3]), rtol=1e-5)


def test_checkpoint_deleted_after_listing_is_skipped(ckdir, trained, tmp_path):
    for path in glob.glob(str(ckdir / "ckpt-6.*")):  # listed in the state file, files gone
        os.unlink(path)
    with pytest.warns(RuntimeWarning, match="skipping checkpoint 'ckpt-6'.*max_to_keep"):
        rows = evaluator(ckdir, tmp_path / "log").run()
    check_rows(rows, trained[1], [1, 3])
    assert json.load(open(tmp_path / "log" / STATE_FILENAME))["skipped"] == ["ckpt-6"]


def test_checkpoint_seen_then_deleted_by_max_to_keep(ckdir, trained, tmp_path):
    logdir, weights = tmp_path / "log", dict(trained[1])
    assert evaluator(ckdir, logdir, max_evaluations=1).run()[0]["epoch_num"] == 1  # lists ckpt-6
    model = build_model()
    ModelSaver.restore(model, ckdir)
    train(ckdir, 4, weights, initial_epoch=3, model=model, max_to_keep=2)  # deletes ckpt-3, -6
    assert sorted(os.path.basename(p) for p in glob.glob(str(ckdir / "*.index"))) == \
        ["ckpt-12.index", "ckpt-9.index"]
    with pytest.warns(RuntimeWarning, match="skipping checkpoint 'ckpt-6'"):
        rows = evaluator(ckdir, logdir).run()
    check_rows(rows, weights, [3, 4])
    assert _epochs(logdir / "stats.json") == [1, 3, 4]


def test_stop_from_a_writer(ckdir, tmp_path):
    class StopAfterFirst(MonitorWriter):
        def write(self, epoch_num, step, scalars):
            ev.stop()

    ev = evaluator(ckdir, None, monitors=[StopAfterFirst()])
    assert [r["epoch_num"] for r in ev.run()] == [1] and ev.stop_reason == "stopped"


@pytest.mark.parametrize("kwargs, match", [
    ({"max_evaluations": 0}, "max_evaluations=0"),
    ({"max_evaluations": 1.5}, "max_evaluations=1.5"),
    ({"poll_seconds": -1}, "poll_seconds=-1"),
    ({"timeout": "10"}, "timeout='10'"),
])
def test_bad_arguments_name_the_value(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluator(tmp_path, tmp_path / "log", **kwargs)


def test_bad_model_and_directory(tmp_path):
    with pytest.raises(TypeError, match="model=42"):
        SidecarEvaluator(42, val_data(), ScalarStats("loss"), tmp_path)
    with pytest.raises(ValueError, match="checkpoint_dir=''"):
        SidecarEvaluator(build_model(), val_data(), ScalarStats("loss"), "")
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="must be built"):
        SidecarEvaluator(unbuilt, val_data(), ScalarStats("loss"), tmp_path)


def test_wrong_model_for_the_checkpoints_is_an_error(ckdir, tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    other.compile("sgd", "sparse_categorical_crossentropy")
    ev = SidecarEvaluator(other, val_data(), ScalarStats("loss"), ckdir, logdir=tmp_path / "log")
    with pytest.raises(ValueError, match="does not match the model"):
        ev.run()
    assert not os.path.exists(tmp_path / "log" / STATE_FILENAME)  # nothing marked done




def test_several_sets_with_a_combination_and_limit_batches(ckdir, trained, tmp_path):
    weights = trained[1]
    half = tf.data.Dataset.from_tensor_slices((X_VAL[:24], Y_VAL[:24])).batch(8)  # 3 batches, 2 validated
    ev = SidecarEvaluator(build_model(), {"all": val_data(), "half": half}, ScalarStats("loss"), ckdir,
                          logdir=tmp_path / "log", poll_seconds=0.05, combine="min", limit_batches=2)
    rows = ev.run()
    assert [r["epoch_num"] for r in rows] == [1, 2, 3]
    for r in rows:
        model = build_model()
        model.set_weights(weights[r["epoch_num"]])
        expected = {"all": model.evaluate(X_VAL[:32], Y_VAL[:32], batch_size=16, verbose=0),
                    "half": model.evaluate(X_VAL[:16], Y_VAL[:16], batch_size=8, verbose=0)}
        for name, value in expected.items():
            np.testing.assert_allclose(r[f"validation_{name}_loss"], value, rtol=1e-5)
        assert r["validation_loss"] == pytest.approx(min(expected.values()), rel=1e-5)
        assert (r["validation_all_num_samples"], r["validation_half_num_samples"]) == (32, 16)
