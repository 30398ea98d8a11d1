"""SidecarEvaluator on Keras-format files: training writes them with
``keras.callbacks.ModelCheckpoint`` (weights-only ``*.weights.h5``, or
``*.keras`` model files), the sidecar evaluates each one once, in order; its
numbers equal Keras's evaluate and numpy on the weights recorded at each
epoch end. Under JAX: tests/jax/test_jax_sidecar.py."""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.models import classifier
from infer_callbacks import ClassificationError, ScalarStats
from infer_callbacks.sidecar.evaluator import STATE_FILENAME, SidecarEvaluator
from infer_callbacks.sidecar.keras_files import FINISHED_MARKER, KerasFiles, epoch_of

STEPS_PER_EPOCH = 3  # 48 training samples, batch 16

_rng = np.random.default_rng(11)
X_TRAIN = _rng.normal(size=(48, 4)).astype("float32")
Y_TRAIN = _rng.integers(0, 3, 48)
X_VAL = _rng.normal(size=(40, 4)).astype("float32")
Y_VAL = _rng.integers(0, 3, 40)


def build_model() -> keras.Model:
    return classifier(seed=None, hidden=8, activation="softmax", optimizer=keras.optimizers.SGD(0.5),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def val_data() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((X_VAL, Y_VAL)).batch(16)  # 16, 16, 8


class _Record(keras.callbacks.Callback):
    """The weights at each epoch end (what that epoch's file holds)."""

    def __init__(self, weights: dict):
        super().__init__()
        self.weights = weights

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1] = [np.array(w) for w in self.model.get_weights()]


def train(ckdir, filename: str, epochs: int, **checkpoint_kwargs) -> dict:
    keras.utils.set_random_seed(1)
    weights: dict = {}
    build_model().fit(X_TRAIN, Y_TRAIN, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=[
        keras.callbacks.ModelCheckpoint(os.path.join(ckdir, filename), **checkpoint_kwargs), _Record(weights)])
    return weights


def check_rows(rows, weights, epochs) -> None:
    """Each row against Keras's evaluate and numpy on that epoch's weights."""
    assert [r["epoch_num"] for r in rows] == list(epochs)
    for r in rows:
        assert r["global_step"] == STEPS_PER_EPOCH * r["epoch_num"]  # the optimizer's step in the file
        model = build_model()
        model.set_weights(weights[r["epoch_num"]])
        loss, accuracy = model.evaluate(X_VAL, Y_VAL, batch_size=40, verbose=0)
        w1, b1, w2, b2 = (np.asarray(w, "float64") for w in weights[r["epoch_num"]])
        logits = np.maximum(X_VAL @ w1 + b1, 0) @ w2 + b2
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        np.testing.assert_allclose(r["validation_loss"], loss, rtol=1e-5)
        np.testing.assert_allclose(r["validation_loss"], np.mean(-np.log(probs[np.arange(40), Y_VAL])), rtol=1e-5)
        np.testing.assert_allclose(r["validation_error"], 1 - accuracy, atol=1e-7)
        np.testing.assert_allclose(r["validation_error"], np.mean(probs.argmax(1) != Y_VAL), atol=1e-7)


def evaluator(ckdir, logdir, **kwargs) -> SidecarEvaluator:
    kwargs.setdefault("poll_seconds", 0.02)
    return SidecarEvaluator(build_model(), val_data(), [ScalarStats("loss"), ClassificationError()],
                            ckdir, logdir=logdir, **kwargs)


def mark_finished(ckdir) -> None:
    open(os.path.join(ckdir, FINISHED_MARKER), "w").close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three epochs of ModelCheckpoint(save_weights_only=True) files."""
    base = tmp_path_factory.mktemp("keras_files")
    weights = train(base / "ckpt", "epoch{epoch:03d}.weights.h5", 3, save_weights_only=True)
    assert sorted(os.listdir(base / "ckpt")) == [f"epoch00{e}.weights.h5" for e in (1, 2, 3)]
    return base / "ckpt", weights


@pytest.fixture
def ckdir(trained, tmp_path):
    shutil.copytree(trained[0], tmp_path / "ckpt")  # keeps the modification times
    return tmp_path / "ckpt"


def test_each_file_once_in_order_and_a_restart_evaluates_nothing_twice(ckdir, trained, tmp_path):
    weights, logdir = trained[1], tmp_path / "log"
    ev = evaluator(ckdir, logdir, max_evaluations=2)
    assert ev.checkpoint_format == "keras"  # auto: *.weights.h5 files, no `checkpoint` state file
    rows = ev.run()  # epochs 1, 2: each complete as a newer file exists
    assert ev.stop_reason == "max_evaluations" and ev.last_evaluated == 2
    assert [r["checkpoint"] for r in rows] == ["epoch001.weights.h5", "epoch002.weights.h5"]
    check_rows(rows, weights, [1, 2])

    mark_finished(ckdir)  # the newest file is complete too
    ev = evaluator(ckdir, logdir)  # a restart
    rows = ev.run()
    assert ev.stop_reason == "finished" and [r["checkpoint"] for r in rows] == ["epoch003.weights.h5"]
    with open(logdir / "stats.json") as f:
        check_rows(json.load(f), weights, [1, 2, 3])
    assert evaluator(ckdir, logdir).run() == []  # and again: nothing twice
    with open(logdir / STATE_FILENAME) as f:
        assert json.load(f)["evaluated"] == [f"epoch00{e}.weights.h5" for e in (1, 2, 3)]


def test_keras_model_files_load_their_weights(tmp_path):
    weights = train(tmp_path / "ckpt", "model.{epoch:02d}-{loss:.2f}.keras", 2)
    mark_finished(tmp_path / "ckpt")
    rows = evaluator(tmp_path / "ckpt", tmp_path / "log", checkpoint_format="keras").run()
    check_rows(rows, weights, [1, 2])


def test_half_written_file_is_not_read(trained, tmp_path):
    """A truncated file (as ModelCheckpoint leaves it mid-write) gives no
    row; once the whole file is there, it is evaluated once."""
    ckdir, logdir = tmp_path / "ckpt", tmp_path / "log"
    os.makedirs(ckdir)
    with open(trained[0] / "epoch001.weights.h5", "rb") as f:
        whole = f.read()
    with open(ckdir / "epoch001.weights.h5", "wb") as f:
        f.write(whole[: len(whole) // 2])
    ev = evaluator(ckdir, logdir, checkpoint_format="keras", settle_seconds=0.05, timeout=0.5)
    with pytest.warns(RuntimeWarning) as caught:  # maybe "cannot be read yet", then the timeout
        assert ev.run() == [] and ev.stop_reason == "timeout"
    assert "no new checkpoint" in str(caught[-1].message)
    with open(logdir / STATE_FILENAME) as f:
        assert json.load(f)["evaluated"] == []

    with open(ckdir / "epoch001.weights.h5", "wb") as f:  # the writer finishes it
        f.write(whole)
    mark_finished(ckdir)
    rows = evaluator(ckdir, logdir).run()
    assert [r["checkpoint"] for r in rows] == ["epoch001.weights.h5"]
    check_rows(rows, trained[1], [1])


def test_settle_rule_with_a_clock(trained, tmp_path):
    """The newest file is read only once unchanged over settle_seconds (or
    once a newer file exists); one that cannot be read then waits again."""
    now = [0.0]
    files = KerasFiles(str(tmp_path), settle_seconds=5, clock=lambda: now[0])
    state: dict = {}
    path = tmp_path / "epoch001.weights.h5"
    with open(trained[0] / "epoch001.weights.h5", "rb") as f:
        whole = f.read()
    path.write_bytes(whole[:100])
    assert files.todo(state, False) == []
    now[0] = 4.0
    path.write_bytes(whole[:200])  # still growing
    assert files.todo(state, False) == []
    now[0] = 8.0
    assert files.todo(state, False) == []  # unchanged for 4 s only
    now[0] = 9.0
    (ready,) = files.todo(state, False)
    model = build_model()
    with pytest.warns(RuntimeWarning, match="cannot be read yet.*settle_seconds"):
        assert files.restore(model, ready, state) is None
    assert files.todo(state, False) == []  # waits another settle_seconds
    now[0] = 14.0
    assert [f.name for f in files.todo(state, False)] == ["epoch001.weights.h5"]

    path.write_bytes(whole)
    shutil.copy(trained[0] / "epoch002.weights.h5", tmp_path)  # written after it: a newer file
    (first,) = files.todo(state, False)  # epoch 1 is complete now; epoch 2 waits settle_seconds
    assert first.name == "epoch001.weights.h5"
    assert files.restore(model, first, state) == (1, STEPS_PER_EPOCH)
    files.mark_done(state, first, 1)
    assert [f.name for f in files.todo(state, True)] == ["epoch002.weights.h5"]  # the marker


@pytest.mark.parametrize("name, epoch", [
    ("epoch003.weights.h5", 3), ("model.05-0.23.keras", 5), ("resnet50_epoch_12.keras", 12),
    ("best.weights.h5", None), ("7.weights.h5", 7)])
def test_epoch_from_the_file_name(name, epoch):
    assert epoch_of(name) == epoch


def test_bad_format_and_settle_name_the_value(tmp_path):
    with pytest.raises(ValueError, match=r"'keras'.*checkpoint_format='h5'"):
        evaluator(tmp_path, None, checkpoint_format="h5")
    with pytest.raises(ValueError, match="settle_seconds=0"):
        evaluator(tmp_path, None, checkpoint_format="keras", settle_seconds=0)


def test_auto_on_an_empty_directory_is_the_backends_own_format(tmp_path):
    from infer_callbacks.sidecar.keras_files import resolve_format

    expected = "tensorflow" if keras.backend.backend() == "tensorflow" else "keras"
    assert resolve_format(str(tmp_path), "auto") == expected
    (tmp_path / "checkpoint").write_text("")  # TensorFlow's state file decides, on any backend
    assert resolve_format(str(tmp_path), "auto") == "tensorflow"


def test_wrong_model_for_the_files_is_an_error(ckdir, tmp_path):
    mark_finished(ckdir)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    other.compile("sgd", "sparse_categorical_crossentropy")
    ev = SidecarEvaluator(other, val_data(), ScalarStats("loss"), ckdir, logdir=tmp_path / "log")
    with pytest.raises(ValueError, match="epoch001.weights.h5.*does not match the model"):
        ev.run()
    assert not os.path.exists(tmp_path / "log" / STATE_FILENAME)  # nothing marked done


def test_unreadable_file_with_a_newer_one_is_skipped(trained, tmp_path):
    """A file that cannot be read although a newer one exists is damaged,
    not being written: skipped with a warning naming it, then the rest."""
    ckdir, logdir = tmp_path / "ckpt", tmp_path / "log"
    os.makedirs(ckdir)
    (ckdir / "epoch001.weights.h5").write_bytes(b"not an HDF5 file")
    shutil.copy(trained[0] / "epoch002.weights.h5", ckdir)  # written after it
    mark_finished(ckdir)
    with pytest.warns(RuntimeWarning, match="skipping .*epoch001.weights.h5.*cannot be read"):
        rows = evaluator(ckdir, logdir).run()
    check_rows(rows, trained[1], [2])
    with open(logdir / STATE_FILENAME) as f:
        assert json.load(f)["skipped"] == ["epoch001.weights.h5"]
