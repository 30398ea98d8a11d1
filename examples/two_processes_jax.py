"""Two JAX processes on 127.0.0.1 train the digits convnet under
``keras.distribution.DataParallel`` (JAX's distributed runtime, 2 CPU devices
per process) and validate it in the loop; both print the same numbers.

    python examples/two_processes_jax.py [--epochs 3] [--logdir train_log/two_processes_jax]

Run as above, it starts two copies of itself (``--process-id 0`` and ``1``)
with ``KERAS_BACKEND=jax``, ``XLA_FLAGS=--xla_force_host_platform_device_count=2``
and a free loopback port, and prints each one's output. Each process passes
the same whole validation set (397 digits: the last batch of 32 is partial);
each validates its share of whole batches and the processes combine their
results, so every process's ``logs`` hold the same numbers. Only process 0
writes the log directory.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--logdir", default=os.path.join("train_log", "two_processes_jax"))
    parser.add_argument("--timeout", type=float, default=600, help="seconds per process")
    parser.add_argument("--process-id", type=int, default=None, help="(set by the launcher)")
    parser.add_argument("--port", type=int, default=None, help="(set by the launcher)")
    return parser.parse_args(argv)


def launch(args) -> int:
    """Start the two processes; print their output; 0 if both agree."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2",
               TF_CPP_MIN_LOG_LEVEL="2")
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--epochs", str(args.epochs),
                               "--logdir", args.logdir, "--process-id", str(i), "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=args.timeout)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    finals = []
    for i, out in enumerate(outputs):
        lines = [line for line in out.splitlines() if line.startswith(("epoch", "final:", "validation"))]
        print(f"--- process {i} (exit code {procs[i].returncode}) ---")
        print("\n".join(lines) if lines else out[-3000:])
        finals += [line for line in lines if line.startswith("final:")]
    same = len(finals) == 2 and finals[0] == finals[1]
    print("both processes report the same numbers" if same else "the processes disagree or failed")
    return 0 if same and all(p.returncode == 0 for p in procs) else 1


def train(args) -> None:
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    import keras
    keras.distribution.initialize(job_addresses=f"127.0.0.1:{args.port}", num_processes=2,
                                  process_id=args.process_id)
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from keras_digits import build_model, load

    from infer_callbacks import (ClassificationError, InferenceRunner, JSONWriter, Monitors, ScalarPrinter,
                                 ScalarStats)

    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    keras.utils.set_random_seed(0)
    (x, y), (vx, vy) = load()
    x, y = x[:1360], y[:1360]  # 85 global batches of 16: Keras shards each across the 4 devices
    train_ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(16)
    val_ds = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(32)  # 397 = 12 x 32 + 13
    runner = InferenceRunner(val_ds, [ScalarStats("loss"), ClassificationError()], verbose=False,
                             collective_timeout=60)
    model = build_model()
    history = model.fit(train_ds, epochs=args.epochs, verbose=0,
                        callbacks=[runner, Monitors([ScalarPrinter(), JSONWriter(args.logdir)])])
    final = {k: history.history[k][-1] for k in ("validation_loss", "validation_error")}
    print("final: " + json.dumps(final), flush=True)


if __name__ == "__main__":
    arguments = parse()
    if arguments.process_id is None:
        sys.exit(launch(arguments))
    train(arguments)
