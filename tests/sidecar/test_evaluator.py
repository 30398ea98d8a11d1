"""SidecarEvaluator: a training run writes checkpoints with ModelSaver, the
sidecar (here in this process; the command line: test_cli.py)
evaluates each one in order, exactly once; its numbers equal Keras's and
numpy's on the weights recorded at each epoch end."""

from __future__ import annotations

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.sidecar import (X_VAL, Y_VAL, build_model, check_rows, ckdir, epochs_in,  # noqa: F401 (fixtures)
                             evaluator, keras_reference, stats, train, trained, val_data)
from infer_callbacks import ModelSaver, Monitors, ScalarStats
from infer_callbacks.monitors.callback import JSONWriter, MonitorWriter
from infer_callbacks.sidecar.evaluator import STATE_FILENAME, SidecarEvaluator

pytestmark = pytest.mark.tensorflow_only("TensorFlow checkpoints (JAX: tests/sidecar/test_keras_files.py)")




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
    assert epochs_in(logdir / "stats.json") == [1, 3, 4]


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
