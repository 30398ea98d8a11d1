"""Two (or more) worker processes of ``DistributedTrainer`` on 127.0.0.1,
with free ports and a hard timeout: the worker script and its launcher."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

from conftest import REPO


WORKER = textwrap.dedent("""
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np, tensorflow as tf, keras
    from infer_callbacks import (DistributedTrainer, TrainConfig, launch_train_with_config, ModelDesc,
                                 InferenceRunner, ScalarStats, ClassificationError, Monitors,
                                 ScalarPrinter, JSONWriter, ModelSaver, MinSaver, Inferencer)

    trainer = DistributedTrainer(collective_timeout=float(sys.argv[4]))  # first: starts the collective server
    d = np.load(sys.argv[1])
    logdir = sys.argv[2]
    die = sys.argv[3] == "die" and json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 1

    class Die(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if die and epoch == 1:
                os._exit(3)  # a worker lost in the middle of training

    class Linear(ModelDesc):
        def __init__(self):
            self.net = keras.layers.Dense(10, kernel_initializer=keras.initializers.Constant(d["w0"]),
                                          bias_initializer="zeros")
        def inputs(self):
            return [tf.TensorSpec((None, 64), tf.float32, "x"), tf.TensorSpec((None,), tf.int32, "label")]
        def build_graph(self, x, label):
            logits = self.net(x)
            tf.identity(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) != label, tf.float32),
                        name="wrong-top1")
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits), name="cost")
        def optimizer(self):
            return keras.optimizers.SGD(0.5)

    class BatchLog(Inferencer):  # a per-batch custom inferencer: what each _on_fetches call sees
        def _get_fetches(self):
            return ["label", "x"]
        def _before_inference(self):
            self.seen = []
        def _on_fetches(self, results):
            self.seen.append([int(v) for v in results[0]] + [float(results[1].sum())])

    train = tf.data.Dataset.from_tensor_slices((d["xt"], d["yt"])).batch(32)
    val = tf.data.Dataset.from_tensor_slices((d["xv"], d["yv"])).batch(50)
    batch_log = BatchLog()
    runner = InferenceRunner(val, [ScalarStats("cost"), ClassificationError("wrong-top1"), batch_log],
                             verbose=False)
    config = TrainConfig(model=Linear(), data=train, max_epoch=2, verbose=0, callbacks=[
        MinSaver("validation_cost", checkpoint_dir=logdir), runner,
        Monitors([ScalarPrinter(), JSONWriter(logdir)]), ModelSaver(logdir), Die()])
    history = launch_train_with_config(config, trainer)
    kernel, bias = [v.numpy() for v in trainer.model.trainable_variables]

    def keras_model():  # the same model as a compiled Keras model (Keras's fit cannot run here)
        m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(
            10, kernel_initializer=keras.initializers.Constant(d["w0"]))])
        m.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    keras_runner = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()], verbose=False)
    keras_history = launch_train_with_config(TrainConfig(model=keras_model, data=train, max_epoch=2, verbose=0,
                                                         callbacks=[keras_runner]), trainer)
    print("RESULT " + json.dumps({"history": history.history, "kernel": kernel.tolist(), "seen": batch_log.seen,
                                  "bias": bias.tolist(), "samples": runner.num_samples_last_run,
                                  "keras_history": keras_history.history,
                                  "keras_kernel": trainer.model.get_weights()[0].tolist(),
                                  "keras_samples": keras_runner.num_samples_last_run}))
""")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_workers(n: int, args: list[str], timeout: float, script: str = WORKER) -> list[tuple[int, str, str]]:
    """Start ``n`` workers of ``script`` (the run_python pattern, concurrent)."""
    ports = free_ports(n)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["CUDA_VISIBLE_DEVICES"] = "-1"
    procs = []
    for i in range(n):
        env_i = dict(env, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen([sys.executable, "-c", script, *args], env=env_i, cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results
