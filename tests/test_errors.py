"""The catalog of bad inputs and faults (docs/errors.md): each row's
behaviour. Anything that could hang runs in a subprocess under a hard
timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_python
from infer_callbacks import (
    ClassificationError,
    Inferencer,
    InferenceRunner,
    JSONWriter,
    Monitors,
    ScalarStats,
)


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _batches(n=40, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = rng.integers(0, 3, size=n).astype("int32")
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def _runner(source, infs, **kwargs):
    model = kwargs.pop("model", None) or _model()
    runner = InferenceRunner(source, infs, **kwargs)
    runner.set_model(model)
    return runner


class Flow:
    def __init__(self, batches, length=None):
        self.batches, self.length = batches, length

    def __len__(self):
        return self.length if self.length is not None else len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def test_len_differs_from_what_it_yields():
    runner = _runner(Flow(_batches(), length=9), ScalarStats("loss"))
    with pytest.warns(RuntimeWarning, match="reports 9 batches .* but yielded 5"):
        runner.trigger()
    assert runner.num_samples_last_run == 40


def test_structure_change_mid_run():
    batches = _batches()
    batches[3] = (np.zeros((8, 6), "float32"), batches[3][1])
    runner = _runner(batches, ScalarStats("loss"))
    with pytest.raises(Exception, match=r"batch 4 .* does not match the first batch.*float32\[8, 6\]") as info:
        runner.trigger()
    assert any("batch 4" in n for n in getattr(info.value, "__notes__", []))


def test_per_example_expected_but_scalar_fetched():
    def tower(x, label):
        return {"wrong": tf.reduce_mean(tf.cast(tf.argmax(x, 1, output_type=tf.int32) != label, tf.float32))}

    runner = _runner(_batches(), ClassificationError("wrong"), tower_func=tower)
    with pytest.raises(ValueError, match="per-example vector for 'wrong'.*scalar per batch"):
        runner.trigger()


def _nan_tower(x, label):
    loss = tf.reduce_sum(x, 1)
    return {"loss": tf.where(label == 0, tf.constant(np.nan, tf.float32), loss)}


def test_nonfinite_warns_naming_tensor_and_training_goes_on():
    batches = _batches()
    model = _model()
    ds = tf.data.Dataset.from_tensor_slices((np.concatenate([b[0] for b in batches]),
                                             np.concatenate([b[1] for b in batches]))).batch(8)
    with pytest.warns(RuntimeWarning, match="'loss' had NaN or infinite values"):
        history = model.fit(ds, epochs=2, verbose=0,
                            callbacks=[InferenceRunner(batches, ScalarStats("loss"), tower_func=_nan_tower)])
    assert len(history.history["validation_loss"]) == 2 and np.isnan(history.history["validation_loss"]).all()


def test_nonfinite_can_raise_instead():
    runner = _runner(_batches(), ScalarStats("loss"), tower_func=_nan_tower, on_nonfinite="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FloatingPointError, match="validation_loss"):
            runner.trigger()


def test_inferencer_error_leaves_runner_usable():
    calls = {"n": 0}

    class FlakyOnce(Inferencer):
        def _before_inference(self):
            self.total = 0.0

        def _get_fetches(self):
            return ["label"]

        def _on_fetches(self, results):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("flaky")
            self.total += results[0].sum()

        def _after_inference(self):
            return {"label_sum": self.total}

    batches = _batches()
    runner = _runner(batches, [FlakyOnce(), ScalarStats("loss")])
    with pytest.raises(RuntimeError, match="flaky") as info:
        runner.trigger()
    assert any("FlakyOnce" in n and "batch 2" in n for n in info.value.__notes__)
    results = runner.trigger()
    assert results["label_sum"] == sum(int(b[1].sum()) for b in batches)
    assert runner.num_samples_last_run == 40


def test_duplicate_keys_at_run_time():
    class Same(Inferencer):
        def _get_fetches(self):
            return ["label"]

        def _on_fetches(self, results):
            pass

        def _after_inference(self):
            return {"validation_x": 1.0}

    runner = _runner(_batches(), [Same(), Same()])
    with pytest.raises(ValueError, match="same key 'validation_x'"):
        runner.trigger()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"infs": "loss"}, ValueError, "must be an Inferencer or a non-empty list"),
    ({"infs": [ScalarStats("loss"), "loss"]}, TypeError, "infer_callbacks.Inferencer"),
    ({"infs": []}, ValueError, "non-empty list"),
    ({"steps_per_execution": 0}, ValueError, "steps_per_execution=0"),
    ({"tower_func": 3}, TypeError, "`tower_func` must be callable"),
    ({"on_nonfinite": "ignore"}, ValueError, "on_nonfinite='ignore'"),
    ({"input": 7}, TypeError, "`input` must be"),
    ({"input": np.zeros((4, 5))}, TypeError, "from_tensor_slices"),
])
def test_bad_arguments(kwargs, error, match):
    args = {"input": _batches(), "infs": ScalarStats("loss")}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        InferenceRunner(args.pop("input"), args.pop("infs"), **args)


def test_stats_json_from_another_run(tmp_path):
    path = tmp_path / "stats.json"
    old = [{"epoch_num": 1, "global_step": 500, "validation_loss": 1.0}]
    path.write_text(json.dumps(old))
    model = _model()
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((16, 5), "float32"), np.zeros(16, "int32"))).batch(8)
    with pytest.raises(ValueError, match="already holds 1 epochs from another run"):
        model.fit(ds, epochs=1, verbose=0, callbacks=[Monitors([JSONWriter(str(tmp_path))])])
    assert json.loads(path.read_text()) == old
    model.fit(ds, epochs=1, verbose=0, callbacks=[Monitors([JSONWriter(str(tmp_path), overwrite=True)])])
    assert [s["global_step"] for s in json.loads(path.read_text())] == [2]
    # A resumed run whose step went backwards is another run too.
    path.write_text(json.dumps(old))
    with pytest.raises(ValueError, match="is from another run: its epoch 1 ended at global step 500"):
        model.fit(ds, epochs=2, initial_epoch=1, verbose=0, callbacks=[Monitors([JSONWriter(str(tmp_path))])])
    assert json.loads(path.read_text()) == old


_CHILD_PRELUDE = """
import os, sys, time, threading
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, keras, tensorflow as tf
from infer_callbacks import InferenceRunner, ScalarStats
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
train = tf.data.Dataset.from_tensor_slices((np.zeros((16, 5), "float32"), np.zeros(16, "int32"))).batch(8)
"""


def test_input_raising_mid_run_ends_the_process():
    code = _CHILD_PRELUDE + textwrap.dedent("""
        class Broken:
            def __iter__(self):
                for i in range(100):
                    if i == 6:
                        raise ConnectionError("shard 6 unreadable")
                    yield np.zeros((4, 5), "float32"), np.zeros(4, "int32")
        model.fit(train, epochs=3, verbose=0, callbacks=[InferenceRunner(Broken(), ScalarStats("loss"))])
    """)
    t0 = time.monotonic()
    proc = run_python(code, timeout=120)
    assert proc.returncode != 0
    assert "shard 6 unreadable" in proc.stderr and "validation batch 7" in proc.stderr
    assert time.monotonic() - t0 < 120


def test_keyboard_interrupt_stops_promptly():
    code = _CHILD_PRELUDE + textwrap.dedent("""
        class Slow:
            def __iter__(self):
                for i in range(10_000):
                    if i == 2:
                        print("validating", flush=True)
                    time.sleep(0.05)
                    yield np.zeros((4, 5), "float32"), np.zeros(4, "int32")
        runner = InferenceRunner(Slow(), ScalarStats("loss"))
        try:
            model.fit(train, epochs=1, verbose=0, callbacks=[runner])
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
    """)
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "validating" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "validating" in line, proc.stderr.read()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3 and "interrupted" in out
    assert elapsed < 15


def test_unbatched_dataset_is_refused_before_training():
    x = np.zeros((10, 5), "float32")
    y = np.zeros(10, "int32")
    runner = InferenceRunner(tf.data.Dataset.from_tensor_slices((x, y)), ScalarStats("loss"))  # no .batch()
    runner.set_model(_model())
    with pytest.raises(ValueError, match=r"looks unbatched.*\.batch\(64\)"):
        runner.setup()
