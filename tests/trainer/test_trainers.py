"""The tensorpack-style trainers (trainers.py): their strategies, several
devices giving the numbers of single-device numpy SGD, clear errors before the
first step, the ported example. The shared data and models of the trainer
tests (digits, ``Linear``, numpy SGD, ``Recorder``) are in helpers/trainer.py."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_python
from helpers.trainer import XT, XV, YT, Linear, batches_of, keras_model, numpy_sgd, train_ds
from infer_callbacks import DistributedTrainer, SimpleTrainer, TrainConfig, launch_train_with_config

pytestmark = pytest.mark.tensorflow_only("the ModelDesc trainer host needs TensorFlow")


def test_bad_inputs_fail_before_the_first_step(monkeypatch):
    class NoOpt(Linear):
        def optimizer(self):
            raise NotImplementedError

    class VectorCost(Linear):
        def build_graph(self, x, label):
            return tf.nn.sparse_softmax_cross_entropy_with_logits(label, self.net(x))

    wrong_data = tf.data.Dataset.from_tensor_slices((XT, YT, YT)).batch(32)
    wrong_dtype = tf.data.Dataset.from_tensor_slices((XT, YT.astype(np.int64))).batch(32)
    with pytest.raises(ValueError, match="3 elements.*declares 2"):
        launch_train_with_config(TrainConfig(model=Linear(), data=wrong_data, max_epoch=1), SimpleTrainer())
    with pytest.raises(ValueError, match="label.*int32.*int64"):
        launch_train_with_config(TrainConfig(model=Linear(), data=wrong_dtype, max_epoch=1), SimpleTrainer())
    with pytest.raises(ValueError, match="scalar cost"):
        launch_train_with_config(TrainConfig(model=VectorCost(), data=train_ds(), max_epoch=1), SimpleTrainer())
    with pytest.raises(ValueError, match="no optimizer"):
        launch_train_with_config(TrainConfig(model=NoOpt(), data=train_ds(), max_epoch=1), SimpleTrainer())
    uncompiled = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    with pytest.raises(ValueError, match="not compiled"):
        launch_train_with_config(TrainConfig(model=uncompiled, data=train_ds(), max_epoch=1), SimpleTrainer())
    with pytest.raises(ValueError, match="steps_per_epoch"):
        launch_train_with_config(TrainConfig(model=Linear(), data=train_ds().repeat(), max_epoch=1),
                                 SimpleTrainer())
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="no cluster"):
        launch_train_with_config(TrainConfig(model=Linear(), data=train_ds(), max_epoch=1), DistributedTrainer())
    for bad, match in [("{not json", "not valid JSON"), ('{"cluster": {}}', "non-empty 'cluster'"),
                       ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
                        "out of range"),
                       ('{"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}',
                        "host:port")]:
        monkeypatch.setenv("TF_CONFIG", bad)
        with pytest.raises(ValueError, match=match):
            DistributedTrainer()


def test_sync_multi_gpu_trainer_two_devices():
    """Two replicas (logical CPUs), a last batch of 1 sample (one replica
    empty): the same weights as single-device numpy SGD, exact validation."""
    code = """
        import json, sys
        sys.path[:0] = ["tests"]
        import numpy as np, tensorflow as tf
        from helpers.trainer import *
        from infer_callbacks import (ClassificationError, InferenceRunner, ScalarStats, SyncMultiGPUTrainer,
                                     TrainConfig, launch_train_with_config)
        x, y = XT[:385], YT[:385]
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
        runner = InferenceRunner(val_ds(), [ScalarStats("cost"), ClassificationError("wrong-top1")], verbose=False)
        trainer = SyncMultiGPUTrainer(["/cpu:0", "/cpu:1"])
        h = launch_train_with_config(TrainConfig(model=Linear(), data=ds, max_epoch=2, verbose=0,
                                                 callbacks=[runner]), trainer)
        w, b, losses = numpy_sgd(batches_of(x, y, 32), 2)
        kernel, bias = [v.numpy() for v in trainer.model.trainable_variables]
        ce, logits = ce_and_logits(kernel, bias, XV, YV)
        print("RESULT", json.dumps({
            "replicas": trainer.strategy.num_replicas_in_sync,
            "w": float(np.abs(kernel - w).max()), "loss": float(np.abs(np.array(h.history["loss"]) - losses).max()),
            "cost": [h.history["validation_cost"][-1], float(ce.mean())],
            "err": [h.history["validation_error"][-1], float(np.mean(logits.argmax(1) != YV))],
            "samples": runner.num_samples_last_run}))
    """
    proc = run_python(code, devices=2, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    r = json.loads(line[len("RESULT "):])
    assert r["replicas"] == 2 and r["samples"] == len(XV)
    assert r["w"] < 2e-5 and r["loss"] < 1e-5
    assert r["cost"][0] == pytest.approx(r["cost"][1], rel=1e-5)
    assert r["err"][0] == pytest.approx(r["err"][1], abs=1e-12)


def test_distributed_trainer_takes_the_given_or_the_models_strategy(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = keras_model()
    trainer = DistributedTrainer()
    launch_train_with_config(TrainConfig(model=model, data=train_ds(), max_epoch=1, verbose=0), trainer)
    assert trainer.strategy is strategy
    given = DistributedTrainer(strategy)
    history = launch_train_with_config(TrainConfig(model=Linear(), data=train_ds(), max_epoch=1, verbose=0), given)
    assert given.strategy is strategy
    _, _, losses = numpy_sgd(batches_of(XT, YT, 32), 1)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-5)
    with pytest.raises(ValueError, match="OneDeviceStrategy"):  # SimpleTrainer refuses a model built elsewhere
        launch_train_with_config(TrainConfig(model=model, data=train_ds(), max_epoch=1, verbose=0), SimpleTrainer())


def test_ported_mnist_convnet_example(tmp_path):
    """examples/mnist_port: tensorpack's mnist-convnet with its changed lines;
    its numbers against numpy on the saved weights."""
    import runpy

    from infer_callbacks import OfflinePredictor, PredictConfig
    from infer_callbacks.checkpoints import layout as checkpoint

    folder = os.path.join(REPO, "examples", "mnist_port")
    example = runpy.run_path(os.path.join(folder, "mnist_convnet.py"), run_name="example")
    final = example["main"](["--epochs", "2", "--logdir", str(tmp_path)])
    infos = checkpoint.list_checkpoints(tmp_path)
    assert [i.epoch for i in infos] == [1, 2]
    assert checkpoint.read_finished_marker(tmp_path)["epoch"] == 2
    best = json.loads((tmp_path / "max-validation_accuracy.json").read_text())
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert best["best"] == max(s["validation_accuracy"] for s in stats)
    images, labels = [np.concatenate(a) for a in zip(*example["get_data"]()[1].as_numpy_iterator())]
    predictor = OfflinePredictor(PredictConfig(model=example["Model"](), session_init=infos[-1].path,
                                               input_names=["input"], output_names=["prob"]))
    (prob,) = predictor(images)
    accuracy = float(np.mean(prob.argmax(1) == labels))
    assert final["validation_accuracy"] == pytest.approx(accuracy, abs=1e-6)  # a float32 mean per batch
    assert final["validation_error"] == pytest.approx(1 - accuracy, abs=1e-9)
    assert os.path.exists(os.path.join(folder, "CHANGES.md"))  # the before/after table
