"""ModelDesc's Keras face, DescModel: its inference tower takes the
ModelDesc's inputs by name and computes the cost in inference mode (numpy
on the same weights)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.trainer import W0, XV, YV, Linear, ce_and_logits
from infer_callbacks import ModelDesc


@pytest.mark.not_on_backend("torch", reason="a ModelDesc tower fed tf tensors (the TensorFlow-only trainer host's); torch's autograd tensors do not convert")
def test_inference_tower_of_a_model_desc():
    from infer_callbacks import get_current_tower_context
    from infer_callbacks.towers.model_desc import DescModel

    desc = Linear()
    model = DescModel(desc)
    tower = model.inference_tower()
    assert tower.input_names == ["x", "label"]
    assert list(__import__("inspect").signature(tower).parameters) == ["x", "label"]
    out = tower(tf.constant(XV), tf.constant(YV))
    assert desc.modes == [False] and get_current_tower_context() is None
    ce, _ = ce_and_logits(W0, np.zeros(10), XV, YV)
    np.testing.assert_allclose(out["cost"].numpy(), ce.mean(), rtol=1e-5)


class DropoutNet(ModelDesc):
    """cifar-convnet's pattern, verbatim in spirit: ``if self.training:`` adds
    dropout to the training graph only."""

    def __init__(self):
        init = keras.initializers.Constant
        self.hidden = keras.layers.Dense(32, activation="relu", kernel_initializer=init(H0))
        self.out = keras.layers.Dense(10, kernel_initializer=init(W1))
        self.drop = keras.layers.Dropout(0.5, seed=1)
        self.modes = []

    def inputs(self):
        return [tf.TensorSpec((None, 64), tf.float32, "x"), tf.TensorSpec((None,), tf.int32, "label")]

    def build_graph(self, x, label):
        self.modes.append(self.training)
        h = self.hidden(x)
        if self.training:
            h = self.drop(h, training=True)
        logits = tf.identity(self.out(h), name="logits")
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits), name="cost")

    def optimizer(self):
        return keras.optimizers.SGD(0.1)


H0 = (np.random.default_rng(1).normal(size=(64, 32)) * 0.2).astype(np.float32)
W1 = (np.random.default_rng(2).normal(size=(32, 10)) * 0.2).astype(np.float32)


@pytest.mark.tensorflow_only("drives the tensorpack-style trainer host, which is TensorFlow-only")
def test_self_training_is_true_in_the_training_graph_and_false_in_the_inference_tower():
    from infer_callbacks import SimpleTrainer, TrainConfig, launch_train_with_config
    from infer_callbacks.predict.predictor import get_predictor
    from infer_callbacks.towers.model_desc import DescModel

    desc = DescModel(DropoutNet())  # the training graph drops units: its cost is not inference's
    x, y = tf.constant(XV[:64]), tf.constant(YV[:64])
    train_cost = float(desc.cost([x, y], training=True))
    infer_cost = float(desc.cost([x, y], training=False))
    ce, _ = ce_and_logits(W1, np.zeros(10), np.maximum(XV[:64].astype(np.float64) @ H0, 0), YV[:64])
    np.testing.assert_allclose(infer_cost, ce.mean(), rtol=1e-5)  # inference: no dropout
    assert desc.desc.modes == [True, False] and not np.isclose(train_cost, infer_cost, rtol=1e-3)

    net = DropoutNet()
    data = tf.data.Dataset.from_tensor_slices((XV, YV)).batch(64)
    launch_train_with_config(TrainConfig(model=net, data=data, max_epoch=1, verbose=0), SimpleTrainer())
    assert True in net.modes and False in net.modes  # the trainer's check pass, then the training step
    assert not net.training  # outside any tower context: inference, Keras's default
    w_h, b_h = net.hidden.get_weights()
    w_o, b_o = net.out.get_weights()
    (logits,) = get_predictor(net, ["x"], ["logits"])(XV)
    reference = np.maximum(XV.astype(np.float64) @ w_h + b_h, 0) @ w_o + b_o  # no dropout
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-5)
    assert not np.allclose(w_o, W1)  # it trained


def test_training_is_read_only():
    with pytest.raises(AttributeError):
        DropoutNet().training = True
