"""tensorpack's basics/mnist-convnet example, ported to infer_callbacks, on
scikit-learn's bundled 8x8 digits (no download). See CHANGES.md next to this
file for every line that differs from the tensorpack original and why.

    python examples/mnist_port/mnist_convnet.py --epochs 10
    python examples/mnist_port/mnist_convnet.py --epochs 15 --load train_log/mnist_port   # resume: 5 more
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from infer_callbacks import (ClassificationError, InferenceRunner, JSONWriter, MaxSaver,  # noqa: E402
                             ModelDesc, ModelSaver, Monitors, ScalarPrinter, ScalarStats, SimpleTrainer,
                             TrainConfig, get_current_tower_context, launch_train_with_config)

IMAGE_SIZE = 8  # the digits are 8x8 (MNIST: 28x28)
BATCH = 64


class Model(ModelDesc):
    def __init__(self):
        # [changed] layers are Keras layers created once, here (tensorpack: LinearWrap in build_graph)
        conv = dict(kernel_size=3, padding="same", activation="relu")
        self.fc0 = keras.layers.Dense(128, activation="relu", name="fc0")
        self.fc1 = keras.layers.Dense(10, name="fc1")
        self.net = keras.Sequential([
            keras.layers.Conv2D(32, name="conv0", **conv), keras.layers.MaxPooling2D(2, name="pool0"),
            keras.layers.Conv2D(32, name="conv1", **conv), keras.layers.Conv2D(32, name="conv2", **conv),
            keras.layers.MaxPooling2D(2, name="pool1"), keras.layers.Conv2D(32, name="conv3", **conv),
            keras.layers.Flatten(), self.fc0, keras.layers.Dropout(0.5), self.fc1])

    def inputs(self):
        # [changed] tf.TensorSpec(shape, dtype, name) instead of InputDesc(dtype, shape, name)
        return [tf.TensorSpec((None, IMAGE_SIZE, IMAGE_SIZE), tf.float32, "input"),
                tf.TensorSpec((None,), tf.int32, "label")]

    def build_graph(self, image, label):
        image = tf.expand_dims(image, 3) * 2 - 1
        training = get_current_tower_context().is_training  # [changed] Keras needs `training`
        logits = self.net(image, training=training)
        tf.nn.softmax(logits, name="prob")
        cost = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=label)
        cost = tf.reduce_mean(cost, name="cross_entropy_loss")
        correct = tf.cast(tf.nn.in_top_k(label, logits, 1), tf.float32, name="correct")
        tf.reduce_mean(correct, name="accuracy")
        tf.identity(1.0 - correct, name="wrong-top1")  # [added] for ClassificationError
        # [changed] weight decay on the fc kernels by attribute (tensorpack: regex 'fc.*/W')
        wd_cost = tf.multiply(1e-5, tf.add_n([tf.nn.l2_loss(self.fc0.kernel), tf.nn.l2_loss(self.fc1.kernel)]),
                              name="regularize_loss")
        # [removed] summary.add_moving_summary / add_param_summary: the trainer logs `loss`
        return tf.add_n([wd_cost, cost], name="total_cost")  # [changed] returned, not self.cost

    def optimizer(self):
        # [changed] a Keras schedule on the optimizer's own step counter
        steps_per_epoch = int(np.ceil(1500 / BATCH))
        lr = keras.optimizers.schedules.ExponentialDecay(
            1e-3, decay_steps=steps_per_epoch * 10, decay_rate=0.3, staircase=True)
        return keras.optimizers.Adam(lr)


def get_data():
    # [changed] sklearn's digits as tf.data (tensorpack: BatchData(dataset.Mnist(...)))
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
    train = tf.data.Dataset.from_tensor_slices((images[:1500], labels[:1500])).shuffle(1500, seed=0).batch(BATCH)
    test = tf.data.Dataset.from_tensor_slices((images[1500:], labels[1500:])).batch(128)  # partial last batch
    return train, test


def get_config(logdir: str, max_epoch: int) -> TrainConfig:
    dataset_train, dataset_test = get_data()
    return TrainConfig(
        model=Model(),
        dataflow=dataset_train,
        callbacks=[
            ModelSaver(logdir),  # [changed] the directory is explicit (tensorpack: logger.LOG_DIR)
            MaxSaver("validation_accuracy"),  # next to the ModelSaver's checkpoints
            InferenceRunner(
                dataset_test,
                [ScalarStats(["cross_entropy_loss", "accuracy"]), ClassificationError()]),
            Monitors([ScalarPrinter(), JSONWriter(logdir)]),  # [added] tensorpack's default monitors
        ],
        max_epoch=max_epoch,
        verbose=0,
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--logdir", default=os.path.join("train_log", "mnist_port"))
    parser.add_argument("--load", help="a checkpoint (prefix or ModelSaver directory) to resume from")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    config = get_config(args.logdir, args.epochs)
    if args.load:
        config.session_init = args.load  # [changed] a path (tensorpack: SaverRestore(path))
    history = launch_train_with_config(config, SimpleTrainer())
    final = {k: float(v[-1]) for k, v in history.history.items()}
    if not final:  # the checkpoint already reached --epochs
        print(f"nothing trained: {args.load!r} is already at epoch {args.epochs} or later (--epochs "
              f"{args.epochs}); pass a larger --epochs to train on, e.g. --epochs {args.epochs + 5}.")
        return final
    print(f"final: {json.dumps(final)}")
    return final


if __name__ == "__main__":
    main()
