"""One process of a two-process JAX job on 127.0.0.1, for
``test_jax_processes.py``: ``python processes_worker.py <process id> <port>
<logdir> <scenario,...>``. Runs every scenario in order and prints one JSON
line per scenario (``{"scenario", "results" | "error", "seconds"}``), then
ends with ``os._exit`` (after a fault, JAX's shutdown barrier would wait for
the lost process); process 0 first waits for process 1 to be done, since
JAX's coordination service lives in process 0."""

from __future__ import annotations

import json
import os
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

PID, PORT, LOGDIR, SCENARIOS = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].split(",")
keras.distribution.initialize(job_addresses=f"127.0.0.1:{PORT}", num_processes=2, process_id=PID)

from infer_callbacks import (ClassificationError, DataParallelInferenceRunner, GatherOutputs,  # noqa: E402
                             InferenceRunner, Inferencer, JSONWriter, ModelSaver, Monitors, PeriodicTrigger,
                             ScalarStats)

rng = np.random.default_rng(0)
X = rng.normal(size=(121, 8)).astype("float32")
Y = rng.integers(0, 3, size=121).astype("int32")
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
keras.utils.set_random_seed(1)
MODEL = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
MODEL.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])


def val(n=101, batch=20):
    return tf.data.Dataset.from_tensor_slices((X[:n], Y[:n])).batch(batch)


def reference(n=101) -> dict:
    """numpy over the whole set, from the model's (replicated) weights."""
    w1, b1, w2, b2 = (np.asarray(v.value.addressable_data(0), np.float64) for v in MODEL.weights)
    logits = np.maximum(X[:n] @ w1 + b1, 0) @ w2 + b2
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    return {"validation_loss": float(-logp[np.arange(n), Y[:n]].mean()),
            "validation_error": float((logits.argmax(-1) != Y[:n]).mean()), "logits": logits}


class Order(Inferencer):
    """A per-batch custom inferencer: a number that depends on the batches' order."""

    def __init__(self, fail_on=None, kill_on=None):
        self.fail_on, self.kill_on = fail_on, kill_on

    def _get_fetches(self):
        return ["loss"]

    def _before_inference(self):
        self.k, self.value, self.sizes = 0, 0.0, []

    def _on_fetches(self, results):
        self.k += 1
        if self.fail_on == (PID, self.k):
            raise ValueError(f"bad batch {self.k} on process {PID}")
        if self.kill_on == (PID, self.k):
            os.kill(os.getpid(), 9)
        self.value += self.k * float(np.sum(results[0], dtype=np.float64))
        self.sizes.append(len(results[0]))

    def _after_inference(self):
        return {"validation_order": self.value, "validation_batches": float(self.k)}


def gathered(out):
    logits = reference()["logits"]
    return {"validation_gather_diff": float(np.abs(out["output"] - logits).max()),
            "validation_gather_rows": float(len(out["output"]))}


def run(runner):
    runner.set_model(MODEL)
    runner.before_train()
    return runner.trigger()


def scenario(name: str):
    quick = dict(verbose=False, collective_timeout=40.0)  # far above a lag between the processes
    if name == "fit":  # training, one writer, every-k-steps schedule, evaluate where it works
        logdir = os.path.join(LOGDIR, f"p{PID}")
        runner = InferenceRunner(val(100), [ScalarStats("loss"), ClassificationError()], verbose=False)
        steps = []

        class Steps(keras.callbacks.Callback):
            def on_test_end(self, logs=None):
                steps.append(int(MODEL.optimizer.iterations.numpy()))

        # Keras shards a tf.data training set across the processes (each gets 10 of every 20).
        train = tf.data.Dataset.from_tensor_slices((X[:100], Y[:100])).batch(20)
        hist = MODEL.fit(train, epochs=2, verbose=0, callbacks=[
            PeriodicTrigger(runner, every_k_steps=4), Steps(),
            Monitors([JSONWriter(logdir)]), ModelSaver(os.path.join(logdir, "ckpt"))])
        loss, acc = MODEL.evaluate(val(100), verbose=0)
        return {"runner": runner.trigger(), "evaluate": {"validation_loss": loss, "validation_error": 1 - acc},
                "reference": {k: v for k, v in reference(100).items() if k != "logits"},
                "history": {k: v for k, v in hist.history.items()}, "steps": steps,
                "files": sorted(os.path.relpath(os.path.join(d, f), logdir)
                                for d, _, fs in os.walk(logdir) for f in fs)}
    ref = {k: v for k, v in reference().items() if k != "logits"}
    if name == "state":  # built-ins only: states exchanged
        return {"runner": run(InferenceRunner(val(), [ScalarStats("loss"), ClassificationError()], **quick)),
                "reference": ref}
    if name == "batches":  # a custom inferencer and GatherOutputs: every batch to every process
        order, gather = Order(), GatherOutputs(["output"], gathered, max_memory_mb=0.001)
        runner = InferenceRunner(val(), [ScalarStats("loss"), ClassificationError(), order, gather], **quick)
        got = run(runner)
        return {"runner": got, "reference": ref, "sizes": order.sizes, "spills": gather.num_spills,
                "samples": runner.num_samples_last_run}
    if name == "data_parallel":
        runner = DataParallelInferenceRunner(val(), [ScalarStats("loss"), ClassificationError(), Order()],
                                             gpus=["/cpu:0", "/cpu:1"], **quick)
        return {"runner": run(runner), "reference": ref,
                "devices": [str(d) for d in next(iter(runner._validator.bindings.values())).devices]}
    if name == "asynchronous":
        return {"runner": run(InferenceRunner(val(), [ScalarStats("loss")], asynchronous=True, **quick))}
    if name == "uneven":  # process 1 passes a longer set
        return {"runner": run(InferenceRunner(val(101 if PID == 0 else 121), [ScalarStats("loss")], **quick))}
    if name == "raises":  # a custom inferencer raises on process 1 only
        return {"runner": run(InferenceRunner(val(), [Order(fail_on=(1, 2))], **quick))}
    if name == "killed":  # process 1 dies during a run
        return {"runner": run(InferenceRunner(val(), [Order(kill_on=(1, 2))], verbose=False,
                                              collective_timeout=10.0))}
    raise ValueError(f"unknown scenario {name!r}")


for name in SCENARIOS:
    start = time.perf_counter()
    try:
        line = {"scenario": name, **scenario(name)}
    except Exception as e:  # noqa: BLE001 - reported to the test
        line = {"scenario": name, "error": f"{type(e).__name__}: {e}"}
    line["seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(line, default=float), flush=True)
# Process 0 runs JAX's coordination service: it leaves last (unless process 1 was killed).
from jax._src.distributed import global_state  # noqa: E402

if PID:
    global_state.client.key_value_set("worker_done/1", "1")
elif "killed" not in SCENARIOS:
    global_state.client.blocking_key_value_get("worker_done/1", 60_000)
os._exit(0)
