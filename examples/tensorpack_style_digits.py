"""A tensorpack-style ModelDesc on scikit-learn's bundled digits (no download),
trained by launch_train_with_config with in-loop validation, a stats table per
epoch, checkpoints and the best model kept.

    python examples/tensorpack_style_digits.py                 # SimpleTrainer
    python examples/tensorpack_style_digits.py --gpus 2        # SyncMultiGPUTrainer (2 GPUs, or 2 CPU devices)
    python examples/tensorpack_style_digits.py --workers 2     # DistributedTrainer: 2 local worker processes

With ``--workers N`` this script starts N copies of itself on 127.0.0.1, each
with its own ``TF_CONFIG``, and prints every worker's validation table: the
numbers are the same on all workers; only worker 0 writes the log directory.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--logdir", default=os.path.join("train_log", "tensorpack_style"))
    parser.add_argument("--gpus", type=int, default=0, help="SyncMultiGPUTrainer on this many devices")
    parser.add_argument("--workers", type=int, default=0, help="start this many local workers")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per worker (--workers)")
    return parser.parse_args(argv)


def launch_workers(args) -> int:
    """Start ``args.workers`` copies of this script as a local cluster."""
    socks = [socket.socket() for _ in range(args.workers)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    child_args = [os.path.abspath(__file__), "--epochs", str(args.epochs), "--batch", str(args.batch), "--logdir", args.logdir]
    procs = []
    for i in range(args.workers):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen([sys.executable, *child_args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    status = 0
    try:
        for i, p in enumerate(procs):
            out, _ = p.communicate(timeout=args.timeout)
            print(f"===== worker {i} (exit code {p.returncode}) =====")
            print(out if p.returncode == 0 else out[-5000:])
            status = status or p.returncode
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return status


def main(argv=None) -> dict:
    args = parse(argv)
    if args.workers:
        sys.exit(launch_workers(args))

    import tensorflow as tf

    if args.gpus and not tf.config.list_physical_devices("GPU"):  # demo on CPU devices
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(args.gpus)])

    from infer_callbacks import (ClassificationError, DistributedTrainer, InferenceRunner, JSONWriter,
                                 MinSaver, ModelSaver, Monitors, ScalarPrinter, ScalarStats, SimpleTrainer,
                                 SyncMultiGPUTrainer, TrainConfig, launch_train_with_config)

    if os.environ.get("TF_CONFIG"):
        trainer = DistributedTrainer()  # create it first: it starts this worker's server
    elif args.gpus:
        gpus = tf.config.list_physical_devices("GPU")
        trainer = SyncMultiGPUTrainer(args.gpus if gpus else [f"/cpu:{i}" for i in range(args.gpus)])
    else:
        trainer = SimpleTrainer()

    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    from infer_callbacks import ModelDesc, get_current_tower_context

    class Model(ModelDesc):
        def __init__(self):
            self.net = keras.Sequential([
                keras.layers.Reshape((8, 8, 1)),
                keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Flatten(),
                keras.layers.Dropout(0.2),
                keras.layers.Dense(10),
            ])

        def inputs(self):
            return [tf.TensorSpec((None, 64), tf.float32, "x"), tf.TensorSpec((None,), tf.int32, "label")]

        def build_graph(self, x, label):
            training = get_current_tower_context().is_training
            logits = self.net(x, training=training)
            tf.identity(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) != label, tf.float32),
                        name="wrong-top1")
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits), name="cost")

        def optimizer(self):
            return keras.optimizers.Adam(1e-2)

    digits = load_digits()
    x = (digits.data / 16).astype(np.float32)
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    n_val = 397  # a prime: the last validation batch is partial
    train = tf.data.Dataset.from_tensor_slices((x[n_val:], y[n_val:])).shuffle(2000, seed=0).batch(args.batch)
    val = tf.data.Dataset.from_tensor_slices((x[:n_val], y[:n_val])).batch(100)

    config = TrainConfig(
        model=Model(), data=train, max_epoch=args.epochs, verbose=0,
        callbacks=[
            InferenceRunner(val, [ScalarStats("cost"), ClassificationError("wrong-top1")]),
            ModelSaver(os.path.join(args.logdir, "ckpt"), max_to_keep=2),
            MinSaver("validation_error"),  # next to the ModelSaver's checkpoints
            Monitors([ScalarPrinter(), JSONWriter(args.logdir)]),
        ])
    history = launch_train_with_config(config, trainer)
    final = {k: v[-1] for k, v in history.history.items()}
    print(f"final: {json.dumps(final)}")
    return final


if __name__ == "__main__":
    main()
