"""The checkpoint layout (``checkpoint.save`` / ``restore``): variables named
by attribute path, whatever Keras auto-named the layers; non-trainable state
kept; checkpoints of another layout or another model refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.predict import Classifier, log_softmax, x  # noqa: F401 (x: a fixture)
from helpers.trainer import Linear, train_ds
from infer_callbacks import (ModelSaver, OfflinePredictor, PredictConfig, SimpleTrainer, TrainConfig,
                             get_current_tower_context, launch_train_with_config)
from infer_callbacks.checkpoints import layout as checkpoint
from infer_callbacks.checkpoints.layout import CheckpointMismatchError

pytestmark = pytest.mark.tensorflow_only("TensorFlow checkpoint layout (tf.train.Checkpoint, ModelDesc, PredictConfig restore)")


@pytest.mark.parametrize("writer", ["checkpoint.save", "trainer"])
def test_model_desc_checkpoint_restores_into_a_fresh_model_desc(writer, rng, x, tmp_path):
    """One layout: variables named by attribute (`net/0-kernel`), whatever
    Keras auto-named the layers (every Classifier() here gets new layer names)."""
    if writer == "trainer":
        from infer_callbacks import SimpleTrainer, TrainConfig, launch_train_with_config

        data = tf.data.Dataset.from_tensor_slices((rng.normal(size=(32, 4)).astype("float32"),
                                                   rng.integers(0, 3, 32).astype("int32"))).batch(8)
        trainer = SimpleTrainer()
        launch_train_with_config(TrainConfig(model=Classifier(), data=data, max_epoch=2, verbose=0,
                                             callbacks=[ModelSaver(tmp_path)]), trainer)
        trained, path = trainer.desc, str(tmp_path)
    else:
        trained = Classifier()
        trained.net(x)
        trained.net.layers[0].kernel.assign(rng.normal(size=(4, 6)))
        path = checkpoint.save(trained, tmp_path / "ckpt", epoch=3, global_step=30)
        assert checkpoint.read_info(path) == (path, 3, 30)
    assert sorted(checkpoint.named_weights(trained)) == ["net/0-kernel", "net/1-bias", "net/2-kernel", "net/3-bias"]
    config = PredictConfig(model=Classifier(), session_init=path, input_names=["x"],
                           output_names=["logits", "prob"])
    logits, prob = OfflinePredictor(config)(x)
    expected = trained.net(x, training=False).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(prob, np.exp(log_softmax(expected)), rtol=1e-5, atol=1e-6)


def test_checkpoint_of_another_layout_is_refused_with_the_fix(rng, x, tmp_path):
    trained = Classifier()
    trained.net(x)
    path = tf.train.Checkpoint(model=trained.net).save(str(tmp_path / "ckpt"))
    with pytest.raises(ValueError, match=r"not written in infer_callbacks' layout.*ModelSaver"):
        OfflinePredictor(PredictConfig(model=Classifier(), session_init=path, input_names=["x"],
                                       output_names=["logits"]))


class WithBatchNorm(Linear):
    """A ModelDesc whose non-trainable state (BatchNorm statistics) must be
    checkpointed too."""

    def __init__(self):
        super().__init__()
        self.bn = keras.layers.BatchNormalization(momentum=0.5)

    def build_graph(self, x, label):
        training = get_current_tower_context().is_training
        logits = self.net(self.bn(x, training=training), training=training)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits), name="cost")


def test_checkpoint_keeps_non_trainable_state_of_a_model_desc(tmp_path):
    ckdir = tmp_path / "ckpt"
    trainer = SimpleTrainer()
    launch_train_with_config(TrainConfig(model=WithBatchNorm(), data=train_ds(), max_epoch=2, verbose=0,
                                         callbacks=[ModelSaver(ckdir)]), trainer)
    trained = [(v.path, v.numpy().copy()) for v in trainer.model.weights]
    moving = [value for path, value in trained if "moving_mean" in path]
    assert moving and np.abs(moving[0]).max() > 0  # BatchNorm did learn statistics

    class AtStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = [v.numpy().copy() for v in self.model.weights]

    start = AtStart()
    launch_train_with_config(TrainConfig(model=WithBatchNorm(), data=train_ds(), max_epoch=3, verbose=0,
                                         session_init=str(ckdir), callbacks=[start]), SimpleTrainer())
    assert len(start.weights) == len(trained)  # same layers, auto-named differently
    for restored, (path, value) in zip(start.weights, trained):
        np.testing.assert_array_equal(restored, value, err_msg=path)


def test_session_init_from_another_model_is_refused(tmp_path):
    other = WithBatchNorm()
    other.net.build((None, 64))
    other.bn.build((None, 64))
    prefix = checkpoint.save(other, tmp_path / "other", epoch=1, global_step=3)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)2 of 2 variables match.*4 extra.*bn/2-moving_mean"):
        launch_train_with_config(TrainConfig(model=Linear(), data=train_ds(), max_epoch=1, verbose=0,
                                             session_init=prefix), SimpleTrainer())
    foreign = tf.train.Checkpoint(model=keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match="not written in infer_callbacks' layout"):
        launch_train_with_config(TrainConfig(model=Linear(), data=train_ds(), max_epoch=1, verbose=0,
                                             session_init=foreign.write(str(tmp_path / "f"))), SimpleTrainer())
