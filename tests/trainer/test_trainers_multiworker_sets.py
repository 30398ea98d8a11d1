"""Several named sets, a combined key, limit_batches and mid-epoch schedules
with two worker processes on 127.0.0.1: every worker runs the same
validations at the same global steps, with the same numbers, equal to Keras's
own evaluation of each set's first batches (in one process, after training)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from helpers.multiworker import start_workers

pytestmark = pytest.mark.tensorflow_only("the ModelDesc trainer host needs TensorFlow")

WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, keras
    from infer_callbacks import (DistributedTrainer, TrainConfig, launch_train_with_config, InferenceRunner,
                                 ScalarStats, ClassificationError, PeriodicTrigger, Monitors, JSONWriter)

    trainer = DistributedTrainer(collective_timeout=60.0)
    d = np.load(sys.argv[1])

    def build():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
        m.compile(optimizer=keras.optimizers.SGD(0.3), loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True), metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
        return m

    train = tf.data.Dataset.from_tensor_slices((d["xt"], d["yt"])).batch(16)  # 8 steps an epoch
    sets = {name: tf.data.Dataset.from_tensor_slices((d["x" + name], d["y" + name])).batch(10)
            for name in ("a", "b")}
    seen = []

    class Steps(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            seen.append(int(self.model.optimizer.iterations.numpy()))

    runner = InferenceRunner(sets, [ScalarStats("loss"), ClassificationError()], combine={"a": 0.25, "b": 0.75},
                             limit_batches=2, verbose=False)
    history = launch_train_with_config(TrainConfig(model=build, data=train, max_epoch=2, verbose=0, callbacks=[
        PeriodicTrigger(runner, every_epoch_fraction=0.5, start_after_steps=5), Steps(),
        Monitors([JSONWriter(sys.argv[2])])]), trainer)
    local = build()
    local.set_weights(trainer.model.get_weights())
    evaluate = {name: local.evaluate(ds.take(2), verbose=0) for name, ds in sets.items()}
    print("RESULT " + json.dumps({"history": history.history, "seen": seen, "last": runner.last_results,
                                  "evaluate": evaluate}))
""")


def test_two_workers_take_the_same_decisions_with_the_same_numbers(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(228, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1).astype("int32")
    data = tmp_path / "data.npz"
    np.savez(data, xt=x[:128], yt=y[:128], xa=x[128:178], ya=y[128:178], xb=x[178:], yb=y[178:])
    results = start_workers(2, [str(data), str(tmp_path / "log")], timeout=170, script=WORKER)
    reports = []
    for i, (code, out, err) in enumerate(results):
        assert code == 0, f"worker {i} failed:\n{err[-3000:]}"
        line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        assert line, f"worker {i} printed no result:\n{out[-2000:]}\n{err[-2000:]}"
        reports.append(json.loads(line[-1][len("RESULT "):]))
    a, b = reports
    # The same runs at the same global steps: half epochs (4, 8, 12, 16), not before step 5.
    assert a["seen"] == b["seen"] == [8, 12, 16]
    assert a["history"] == b["history"] and a["last"] == b["last"]
    last = a["last"]
    for name in ("a", "b"):  # exact over each set's first two batches: Keras's own numbers
        loss, acc = a["evaluate"][name]
        np.testing.assert_allclose(last[f"validation_{name}_loss"], loss, rtol=1e-5)
        np.testing.assert_allclose(last[f"validation_{name}_error"], 1 - acc, atol=1e-6)
        assert last[f"validation_{name}_num_samples"] == 20
    np.testing.assert_allclose(last["validation_loss"],
                               0.25 * last["validation_a_loss"] + 0.75 * last["validation_b_loss"], rtol=1e-9)
    rows = json.loads((tmp_path / "log" / "stats.json").read_text())
    assert [r["global_step"] for r in rows if "validation_loss" in r] == [8, 12, 16]
