"""The tensorpack-style trainer: the same weights and numbers as a numpy
reference or Keras `fit`, the same hook order as `fit`, epochs and steps as in
tensorpack, Keras callbacks unchanged, clear errors before the first step."""

from __future__ import annotations

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_python
from infer_callbacks import (ClassificationError, DistributedTrainer, InferenceRunner, ModelDesc,
                             ScalarStats, SimpleTrainer, SyncMultiGPUTrainer, TrainConfig,
                             get_current_tower_context, launch_train_with_config)

LR = 0.5


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16).astype(np.float32), d.target.astype(np.int32)


X, Y = digits()
XT, YT, XV, YV = X[:400], Y[:400], X[1500:], Y[1500:]  # 400 = 12 x 32 + 16; 297 = 5 x 50 + 47
W0 = (np.random.default_rng(0).normal(size=(64, 10)) * 0.05).astype(np.float32)


class Linear(ModelDesc):
    """Softmax regression, the tensorpack way (the issue's snippet)."""

    def __init__(self):
        self.net = keras.layers.Dense(10, kernel_initializer=keras.initializers.Constant(W0))
        self.modes = []

    def inputs(self):
        return [tf.TensorSpec((None, 64), tf.float32, "x"), tf.TensorSpec((None,), tf.int32, "label")]

    def build_graph(self, x, label):
        training = get_current_tower_context().is_training
        self.modes.append(training)
        logits = self.net(x, training=training)
        tf.identity(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) != label, tf.float32), name="wrong-top1")
        tf.identity(logits, name="logits")
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits), name="cost")

    def optimizer(self):
        return keras.optimizers.SGD(LR)


def ce_and_logits(w, b, x, y):
    logits = x.astype(np.float64) @ w + b
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y], logits


def numpy_sgd(batches, epochs, w=W0, b=np.zeros(10)):
    """Plain SGD on mean cross-entropy; returns weights and per-epoch mean loss
    (weighted by batch size, measured before each step, as Keras reports)."""
    w, b = w.astype(np.float64), b.astype(np.float64)
    losses = []
    for _ in range(epochs):
        total = count = 0.0
        for xb, yb in batches:
            ce, logits = ce_and_logits(w, b, xb, yb)
            total, count = total + ce.sum(), count + len(yb)
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1
            w, b = w - LR * xb.T @ p / len(yb), b - LR * p.mean(0)
        losses.append(total / count)
    return w, b, losses


def batches_of(x, y, size):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def train_ds(batch=32):
    return tf.data.Dataset.from_tensor_slices((XT, YT)).batch(batch)


def val_ds():
    return tf.data.Dataset.from_tensor_slices((XV, YV)).batch(50)


class Recorder(keras.callbacks.Callback):
    """Records every hook with its index and its logs' keys."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def _rec(self, name, index=None, logs=None):
        self.calls.append((name, index, tuple(sorted(logs or {}))))

    def on_train_begin(self, logs=None):
        self._rec("train_begin", None, logs)

    def on_train_end(self, logs=None):
        self._rec("train_end", None, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._rec("epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._rec("epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._rec("batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._rec("batch_end", batch, logs)


# --------------------------------------------------------------------------


def test_modeldesc_matches_numpy_sgd_and_validation(tmp_path):
    model = Linear()
    runner = InferenceRunner(val_ds(), [ScalarStats("cost"), ClassificationError("wrong-top1")], verbose=False)
    trainer = SimpleTrainer()
    config = TrainConfig(model=model, data=train_ds(), max_epoch=2, verbose=0, callbacks=[runner])
    history = launch_train_with_config(config, trainer)

    w, b, losses = numpy_sgd(batches_of(XT, YT, 32), 2)
    kernel, bias = [v.numpy() for v in trainer.model.trainable_variables]
    np.testing.assert_allclose(kernel, w, atol=2e-5)
    np.testing.assert_allclose(bias, b, atol=2e-5)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-5)
    # Validation runs build_graph in inference mode, with the final weights.
    ce, logits = ce_and_logits(kernel, bias, XV, YV)
    np.testing.assert_allclose(history.history["validation_cost"][-1], ce.mean(), rtol=1e-5)
    assert history.history["validation_error"][-1] == pytest.approx(np.mean(logits.argmax(1) != YV), abs=1e-12)
    assert runner.num_samples_last_run == len(XV)
    assert True in model.modes and False in model.modes
    # The validation tower is traced after the training step, in inference mode
    # (build-time traces before the first training trace do not count).
    assert False in model.modes[model.modes.index(True):]
    assert len(trainer.model.weights) == 2  # no new variables from the inference tower

    predict = trainer.get_predictor(["x", "label"], ["logits", "wrong-top1"])
    got_logits, wrong = predict(XV, YV)
    np.testing.assert_allclose(got_logits, logits, atol=1e-4)
    predict_x = trainer.get_predictor(["x"], ["logits"])  # label not needed for logits
    np.testing.assert_allclose(predict_x(XV)[0], logits, atol=1e-4)
    with pytest.raises(ValueError, match="label"):
        trainer.get_predictor(["x"], ["wrong-top1"])  # depends on the label that is not fed


def _keras_model():
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def test_keras_model_same_as_fit_and_same_hooks():
    keras.utils.set_random_seed(1)
    ref = _keras_model()
    init = ref.get_weights()
    rec_fit = Recorder()
    fit_hist = ref.fit(train_ds(), epochs=2, verbose=0, shuffle=False, callbacks=[
        rec_fit, InferenceRunner(val_ds(), [ScalarStats("loss"), ClassificationError()], verbose=False)])

    model = _keras_model()
    model.set_weights(init)
    rec = Recorder()
    config = TrainConfig(model=model, data=train_ds(), max_epoch=2, verbose=0, callbacks=[
        rec, InferenceRunner(val_ds(), [ScalarStats("loss"), ClassificationError()], verbose=False)])
    history = launch_train_with_config(config, SimpleTrainer())

    assert rec.calls == rec_fit.calls  # same hooks, order, indices and logs keys
    assert set(history.history) == set(fit_hist.history)
    for key, values in fit_hist.history.items():
        np.testing.assert_allclose(history.history[key], values, rtol=1e-5, err_msg=key)
    for a, b in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_epochs_and_steps_as_tensorpack():
    rec = Recorder()
    config = TrainConfig(model=Linear(), data=train_ds(), max_epoch=4, starting_epoch=3,
                         steps_per_epoch=5, verbose=0, callbacks=[rec])
    trainer = SimpleTrainer()
    history = launch_train_with_config(config, trainer)
    epochs = [i for name, i, _ in rec.calls if name == "epoch_begin"]
    assert epochs == [2, 3]  # tensorpack epochs 3 and 4 (1-based, inclusive)
    steps = [i for name, i, _ in rec.calls if name == "batch_end"]
    assert steps == list(range(5)) * 2
    assert len(history.history["loss"]) == 2
    assert int(trainer.model.optimizer.iterations.numpy()) == 10
    # The data is read on across epochs (13 batches, 10 steps): numpy on the same sequence.
    seq = batches_of(XT, YT, 32)[:10]
    w, b, _ = numpy_sgd(seq, 1)
    np.testing.assert_allclose(trainer.model.trainable_variables[0].numpy(), w, atol=2e-5)


def test_keras_callbacks_work_unchanged(tmp_path):
    rec = Recorder()
    early = keras.callbacks.EarlyStopping(monitor="validation_cost", mode="min", patience=1,
                                          min_delta=10.0)
    csv_path = tmp_path / "log.csv"
    config = TrainConfig(model=Linear(), data=train_ds(), max_epoch=10, verbose=0, callbacks=[
        early,  # before the runner: it still sees validation_cost
        keras.callbacks.CSVLogger(str(csv_path)),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "m.weights.h5"), save_weights_only=True),
        rec,
        InferenceRunner(val_ds(), ScalarStats("cost"), verbose=False),
    ])
    history = launch_train_with_config(config, SimpleTrainer())
    assert len(history.history["loss"]) == 2 and early.stopped_epoch == 1
    rows = list(csv.DictReader(open(csv_path)))
    assert [float(r["validation_cost"]) for r in rows] == pytest.approx(history.history["validation_cost"])
    assert (tmp_path / "m.weights.h5").exists()
    assert rec.calls[-1][0] == "train_end"


def test_model_function_and_stop_training():
    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.model.stop_training = True

    rec = Recorder()
    config = TrainConfig(model=lambda: Linear(), data=train_ds(), max_epoch=3, verbose=0, callbacks=[Stop(), rec])
    history = launch_train_with_config(config, SimpleTrainer())
    assert [i for n, i, _ in rec.calls if n == "batch_end"] == [0, 1, 2]
    assert len(history.history["loss"]) == 1


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
        sys.path.insert(0, "tests")
        import numpy as np, tensorflow as tf
        from test_trainer import *
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
    proc = run_python(code, devices=2, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    r = json.loads(line[len("RESULT "):])
    assert r["replicas"] == 2 and r["samples"] == len(XV)
    assert r["w"] < 2e-5 and r["loss"] < 1e-5
    assert r["cost"][0] == pytest.approx(r["cost"][1], rel=1e-5)
    assert r["err"][0] == pytest.approx(r["err"][1], abs=1e-12)


class DataFlow:
    """A tensorpack-style DataFlow: no len, reset_state() once."""

    def __init__(self):
        self.resets = 0

    def reset_state(self):
        self.resets += 1

    def __iter__(self):
        return iter(batches_of(XT, YT, 32))


def test_dataflow_input_and_batchnorm_untouched_by_validation():
    class WithBN(Linear):
        def __init__(self):
            super().__init__()
            self.bn = keras.layers.BatchNormalization()

        def build_graph(self, x, label):
            training = get_current_tower_context().is_training
            logits = self.net(self.bn(x, training=training), training=training)
            tf.identity(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) != label, tf.float32),
                        name="wrong-top1")
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits))

    flow, rec = DataFlow(), Recorder()
    runner = InferenceRunner(val_ds(), ClassificationError("wrong-top1"), verbose=False)
    model = WithBN()
    trainer = SimpleTrainer()
    launch_train_with_config(TrainConfig(model=model, dataflow=flow, max_epoch=2, verbose=0,
                                         callbacks=[rec, runner]), trainer)
    assert flow.resets == 1
    assert [i for n, i, _ in rec.calls if n == "batch_begin"] == list(range(13)) * 2  # no extra hook at the end
    moving = model.bn.moving_mean.numpy().copy()
    assert np.abs(moving).sum() > 0  # training updated it
    runner.trigger()
    np.testing.assert_array_equal(model.bn.moving_mean.numpy(), moving)  # validation did not
    assert len(trainer.model.weights) == 6


def test_keras_model_predictor():
    model = _keras_model()
    trainer = SimpleTrainer()
    launch_train_with_config(TrainConfig(model=model, data=train_ds(), max_epoch=1, verbose=0), trainer)
    (out,) = trainer.get_predictor(["input"], ["output"])(XV)
    np.testing.assert_allclose(out, model.predict(XV, verbose=0), atol=1e-5)


def test_distributed_trainer_takes_the_given_or_the_models_strategy(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = _keras_model()
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


# -- the callback list, binding per run, the ModelDesc's tower ---------------


class Producer(keras.callbacks.Callback):
    """A stand-in validation producer (anything with `pop_reports`)."""

    def __init__(self, key, order):
        super().__init__()
        self.key, self.order = key, order

    def pop_reports(self):
        return []

    def on_epoch_end(self, epoch, logs=None):
        self.order.append(self.key)
        logs[self.key] = float(epoch)


class Wrapper(keras.callbacks.Callback):
    def __init__(self, callback):
        super().__init__()
        self.callback = callback

    def on_epoch_end(self, epoch, logs=None):
        self.callback.on_epoch_end(epoch, logs)


class Reader(keras.callbacks.Callback):
    def __init__(self, order):
        super().__init__()
        self.order, self.seen = order, []

    def on_epoch_end(self, epoch, logs=None):
        self.order.append("reader")
        self.seen.append(sorted(logs))


def test_producers_run_first_in_their_order_and_callbacks_are_not_changed():
    order = []
    reader, a, b = Reader(order), Producer("a", order), Producer("b", order)
    callbacks = [reader, a, keras.callbacks.TerminateOnNaN(), Wrapper(b)]
    before = [dict(vars(c)) for c in callbacks]
    config = TrainConfig(model=Linear(), data=train_ds(), max_epoch=2, verbose=0, callbacks=callbacks)
    launch_train_with_config(config, SimpleTrainer())
    assert order == ["a", "b", "reader"] * 2
    assert reader.seen == [["a", "b", "loss"]] * 2
    assert config.callbacks == callbacks
    skip = ("model", "_model", "params", "order", "seen")  # what Keras sets, what the test records
    for cb, old in zip(callbacks, before):
        assert {k: v for k, v in vars(cb).items() if k not in skip} == {k: v for k, v in old.items() if k not in skip}


def test_inference_tower_of_a_model_desc():
    from infer_callbacks import get_current_tower_context
    from infer_callbacks.model_desc import DescModel

    desc = Linear()
    model = DescModel(desc)
    tower = model.inference_tower()
    assert tower.input_names == ["x", "label"]
    assert list(__import__("inspect").signature(tower).parameters) == ["x", "label"]
    out = tower(tf.constant(XV), tf.constant(YV))
    assert desc.modes == [False] and get_current_tower_context() is None
    ce, _ = ce_and_logits(W0, np.zeros(10), XV, YV)
    np.testing.assert_allclose(out["cost"].numpy(), ce.mean(), rtol=1e-5)


def test_one_runner_reused_by_two_runs_validates_each_runs_model():
    """Binding is per run: the second run validates the second model."""
    runner = InferenceRunner(val_ds(), [ScalarStats("cost")], verbose=False)
    results = []
    for scale in (1.0, 30.0):
        class Scaled(Linear):
            def __init__(self):
                super().__init__()
                self.net = keras.layers.Dense(10, kernel_initializer=keras.initializers.Constant(W0 * scale))

        trainer = SimpleTrainer()
        history = launch_train_with_config(TrainConfig(model=Scaled(), data=train_ds(), max_epoch=1, verbose=0,
                                                       callbacks=[runner]), trainer)
        kernel, bias = [v.numpy() for v in trainer.model.trainable_variables]
        ce, _ = ce_and_logits(kernel, bias, XV, YV)
        results.append((history.history["validation_cost"][-1], ce.mean()))
    for got, expected in results:
        assert got == pytest.approx(expected, rel=1e-5)
    assert results[0][1] != pytest.approx(results[1][1], rel=1e-3)
    assert runner.tower_func is None  # the trainer did not give it a tower


def test_ported_mnist_convnet_example(tmp_path):
    """examples/mnist_port: tensorpack's mnist-convnet with its changed lines;
    its numbers against numpy on the saved weights."""
    import runpy

    from infer_callbacks import OfflinePredictor, PredictConfig, checkpoint

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "mnist_port")
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
