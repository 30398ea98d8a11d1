"""SidecarEvaluator: a training run writes checkpoints with ModelSaver, the
sidecar (in a subprocess, through the command line, or in this process)
evaluates each one in order, exactly once; its numbers equal Keras's and
numpy's on the weights recorded at each epoch end."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import ClassificationError, ModelSaver, Monitors, ScalarStats
from infer_callbacks.monitors import JSONWriter, MonitorWriter
from infer_callbacks.sidecar import STATE_FILENAME, SidecarEvaluator
from infer_callbacks.sidecar_cli import main as cli_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS_PER_EPOCH = 3  # 48 training samples, batch 16
SUBPROCESS_TIMEOUT = 120

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


class _WaitForRow(keras.callbacks.Callback):
    """Training waits (bounded) until the sidecar wrote epoch ``epoch_num``:
    the run is concurrent, whatever the sidecar's start-up time."""

    def __init__(self, stats_path: str, epoch_num: int, deadline: float, proc):
        super().__init__()
        self.stats_path, self.epoch_num, self.deadline, self.proc = stats_path, epoch_num, deadline, proc

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 != self.epoch_num:
            return
        while self.epoch_num not in _epochs(self.stats_path):
            assert self.proc.poll() is None, "the sidecar exited early"
            assert time.monotonic() < self.deadline, "the sidecar never evaluated epoch 1"
            time.sleep(0.05)  # polling for a file, with a deadline (not synchronisation by sleep)


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


def sidecar_process(ckdir, logdir, *args) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "tests"), ROOT]))
    return subprocess.Popen(
        [sys.executable, "-m", "infer_callbacks.sidecar", "--model", "test_sidecar:build_model",
         "--input", "test_sidecar:val_data", "--checkpoint-dir", str(ckdir), "--logdir", str(logdir),
         "--poll-seconds", "0.05", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the sidecar did not stop within {SUBPROCESS_TIMEOUT} s:\n{err[-3000:]}")
    return proc.returncode, err


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


# -- against a training process ------------------------------------------------

def test_command_line_concurrent_with_training_then_restart(tmp_path):
    """The sidecar (a subprocess) starts before training; training waits for
    its first row, then runs on; the sidecar stops at ModelSaver's marker. A
    restarted sidecar finds nothing left: no checkpoint is evaluated twice."""
    ckdir, logdir, weights = tmp_path / "ckpt", tmp_path / "sidecar", {}
    os.makedirs(ckdir)
    proc = sidecar_process(ckdir, logdir, "--timeout", "100")
    try:
        wait = _WaitForRow(str(logdir / "stats.json"), 1, time.monotonic() + 100, proc)
        train(ckdir, 4, weights, extra=[wait])
    except BaseException:
        proc.kill()
        raise
    code, err = finish(proc)
    assert code == 0, err[-3000:]
    assert "4 checkpoints evaluated; stopped: finished" in err
    check_rows(stats(logdir), weights, [1, 2, 3, 4])
    state = json.load(open(logdir / STATE_FILENAME))
    assert state["evaluated"] == [f"ckpt-{STEPS_PER_EPOCH * e}" for e in (1, 2, 3, 4)]
    assert glob.glob(str(logdir / "events.out.tfevents.*"))

    again = evaluator(ckdir, logdir)
    assert again.run() == [] and again.stop_reason == "finished"
    check_rows(stats(logdir), weights, [1, 2, 3, 4])


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


def test_stops_after_timeout_without_marker(tmp_path, capsys):
    os.makedirs(tmp_path / "ckpt")  # training "running", nothing written yet
    argv = ["--model", "test_sidecar:build_model", "--input", "test_sidecar:val_data",
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--logdir", str(tmp_path / "log"),
            "--timeout", "0.3", "--poll-seconds", "0.05"]
    with pytest.warns(RuntimeWarning, match=r"no new checkpoint .*timeout=0\.3.*before evaluating any"):
        assert cli_main(argv) == 3
    assert "0 checkpoints evaluated; stopped: timeout" in capsys.readouterr().err


def test_stop_from_a_writer(ckdir, tmp_path):
    class StopAfterFirst(MonitorWriter):
        def write(self, epoch_num, step, scalars):
            ev.stop()

    ev = evaluator(ckdir, None, monitors=[StopAfterFirst()])
    assert [r["epoch_num"] for r in ev.run()] == [1] and ev.stop_reason == "stopped"


def test_command_line_sigterm_finishes_the_evaluation_under_way(ckdir):
    from infer_callbacks.sidecar_cli import _run_interruptibly

    class SignalAfterFirst(MonitorWriter):
        def write(self, epoch_num, step, scalars):
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the main thread
            deadline = time.monotonic() + 30
            while not ev.stopping:  # the handler's effect, awaited with a deadline
                assert time.monotonic() < deadline, "SIGTERM was not handled"
                time.sleep(0.01)

    ev = evaluator(ckdir, None, monitors=[SignalAfterFirst()])
    rows = _run_interruptibly(ev)
    assert [r["epoch_num"] for r in rows] == [1] and ev.stop_reason == "stopped"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


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


@pytest.mark.parametrize("argv, match", [
    (["--model", "no_colon"], "--model must name a function as 'package.module:function'"),
    (["--model", "no_such_module_xyz:f"], "cannot import module 'no_such_module_xyz'"),
    (["--model", "test_sidecar:nope"], "has no 'nope'"),
])
def test_command_line_errors_name_the_value(tmp_path, capsys, argv, match):
    base = ["--model", "test_sidecar:build_model", "--input", "test_sidecar:val_data",
            "--checkpoint-dir", str(tmp_path), "--logdir", str(tmp_path / "log")]
    with pytest.raises(SystemExit) as e:
        cli_main(base + argv)
    assert e.value.code == 2
    assert match in capsys.readouterr().err


def test_command_line_bad_number(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["--model", "test_sidecar:build_model", "--input", "test_sidecar:val_data",
                  "--checkpoint-dir", str(tmp_path), "--logdir", str(tmp_path / "l"),
                  "--max-evaluations", "0"])
    assert "max_evaluations=0" in capsys.readouterr().err
