"""Validation across JAX processes: one validation of the CNN on 4 CPU
devices as 2 processes x 2 devices (JAX's distributed runtime on
127.0.0.1) and as 1 process x 4 devices, on the same machine, and the bytes
the processes exchange per run.

The machine has few cores, so no speed-up is possible: the point is the
overhead of the exchange. Workload (synthetic, fixed seeds): the CNN of
``bench_jax.py`` (32x32x3, batch 250) on ``--samples`` examples plus 7
(a last batch of 7, which divides no device count), under a
``keras.distribution.DataParallel`` over all 4 devices. Runners, each
timed over ``--rounds`` runs after a first (compiling) one:

* ``InferenceRunner`` with ``ScalarStats('loss')`` and ``ClassificationError()``
  (across processes: each sends its state, O(state) bytes);
* the same plus a per-batch custom inferencer (across processes: every
  batch's outputs to every process, O(examples) bytes);
* ``DataParallelInferenceRunner`` on each process's own devices, built-ins only.

Bytes are what one process sends to the others in one run (JSON, its
header and raw arrays), per runner.

    python benchmarks/bench_jax_processes.py [--samples 5000] [--rounds 3] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def worker(args) -> dict:
    """One process's measurements (run in a child with its XLA_FLAGS)."""
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras
    if args.processes > 1:
        keras.distribution.initialize(job_addresses=f"127.0.0.1:{args.port}", num_processes=args.processes,
                                      process_id=args.process_id)
    import numpy as np
    import tensorflow as tf
    sys.path.insert(0, REPO)
    from infer_callbacks import (ClassificationError, DataParallelInferenceRunner, InferenceRunner, Inferencer,
                                 ScalarStats)

    class PerBatch(Inferencer):
        def _get_fetches(self):
            return ["output"]

        def _before_inference(self):
            self.total = 0.0

        def _on_fetches(self, results):
            self.total += float(np.abs(results[0]).sum())

        def _after_inference(self):
            return {"validation_abs_output": self.total}

    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    n = args.samples + 7
    x, y = rng.normal(size=(n, 32, 32, 3)).astype("float32"), rng.integers(0, 10, size=n).astype("int32")
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(250)
    local = [f"/cpu:{i}" for i in range(len(jax.local_devices()))]
    runners = {
        "builtins": InferenceRunner(val, [ScalarStats("loss"), ClassificationError()], verbose=False),
        "per_batch": InferenceRunner(val, [ScalarStats("loss"), ClassificationError(), PerBatch()],
                                     verbose=False),
        "data_parallel": DataParallelInferenceRunner(val, [ScalarStats("loss"), ClassificationError()],
                                                     gpus=local, verbose=False),
    }
    out = {}
    for name, runner in runners.items():
        runner.set_model(model)
        runner.before_train()
        runner.trigger()  # compiles
        times, sent = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            results = runner.trigger()
            times.append(time.perf_counter() - start)
            binding = next(iter(runner._validator.bindings.values()))
            process_pass = getattr(binding, "_process_pass", None)
            sent.append(process_pass.channel.bytes_sent if process_pass is not None else 0)
        out[name] = {"fastest_s": min(times), "median_s": statistics.median(times), "bytes_sent": max(sent),
                     "results": results}
    return out


def finish(args, out: dict) -> None:
    """Print ``out``; process 0 runs the coordination service, so it leaves
    last (after counting the messages left in the store: none, as the last
    reader of each deletes it)."""
    if args.processes > 1:
        from jax._src.distributed import global_state
        if args.process_id:
            print(json.dumps(out, default=float), flush=True)
            global_state.client.key_value_set(f"bench_done/{args.process_id}", "1")
            return
        for i in range(1, args.processes):
            global_state.client.blocking_key_value_get(f"bench_done/{i}", 600_000)
        out["leftover_keys"] = len(global_state.client.key_value_dir_get_bytes("infer_callbacks/"))
    print(json.dumps(out, default=float), flush=True)


def launch(processes: int, devices: int, args) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "--processes", str(processes),
                               "--process-id", str(i), "--port", str(port), "--samples", str(args.samples),
                               "--rounds", str(args.rounds)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(processes)]
    rows = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=args.timeout)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if not lines:
                raise RuntimeError(f"a benchmark process failed:\n{err[-3000:]}")
            rows.append(json.loads(lines[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per process")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true", help="fewer samples and rounds (smoke test)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        finish(args, worker(args))
        os._exit(0)  # the distributed runtime's shutdown is not part of the measurement
    if args.quick:
        args.samples, args.rounds = 1000, 1
    one = launch(1, 4, args)[0]
    two = launch(2, 2, args)
    results, leftover = [], two[0].pop("leftover_keys", None)
    for name in one:
        ref = one[name]["results"]
        same = all(abs(p[name]["results"][k] - ref[k]) <= 1e-5 * max(1, abs(ref[k]))
                   for p in two for k in one[name]["results"])
        results.append({"runner": name, "one_process_s": one[name]["fastest_s"],
                        "two_processes_s": max(p[name]["fastest_s"] for p in two),
                        "ratio": max(p[name]["fastest_s"] for p in two) / one[name]["fastest_s"],
                        "bytes_sent_per_process": [p[name]["bytes_sent"] for p in two], "same_numbers": same})
    if args.json:
        print(json.dumps({"backend": "jax", "samples": args.samples + 7, "rounds": args.rounds, "cpus": os.cpu_count(),
                          "leftover_keys": leftover, "results": results}))
        return
    print(f"CNN, {args.samples + 7} samples in batches of 250, 4 CPU devices, {os.cpu_count()} CPUs "
          f"(fastest of {args.rounds} runs)")
    print(f"{'runner':14} {'1 proc x 4 s':>12} {'2 proc x 2 s':>12} {'ratio':>6} {'bytes sent / process / run':>28} same")
    for r in results:
        sent = ", ".join(f"{b:,}" for b in r["bytes_sent_per_process"])
        print(f"{r['runner']:14} {r['one_process_s']:>12.3f} {r['two_processes_s']:>12.3f} {r['ratio']:>6.2f} "
              f"{sent:>28} {r['same_numbers']}")
    print(f"messages left in the coordination service's store after the runs: {leftover}")


if __name__ == "__main__":
    main()
