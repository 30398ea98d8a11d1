"""Train a small convnet on scikit-learn's bundled digits (no download), save
a checkpoint, restore it into a fresh model with ``PredictConfig``, export it
three ways (SavedModel, frozen GraphDef, TFLite), reload each with its own
runtime and print how far each one's numbers are from the trained model's.

    python examples/export_and_serve.py [--epochs 5] [--outdir train_log/export_digits]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from tabulate import tabulate  # noqa: E402

from infer_callbacks import ModelExporter, ModelSaver, OfflinePredictor, PredictConfig  # noqa: E402

warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)


def load(seed: int = 0):
    digits = load_digits()
    x = (digits.images[..., None] / 16.0).astype("float32")  # (1797, 8, 8, 1)
    y = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (x[397:], y[397:]), (x[:397], y[:397])


def build_model() -> keras.Model:
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10),
    ])


def make_config(checkpoint_dir: str) -> PredictConfig:
    """A fresh model restored from the latest checkpoint; the inference graph
    adds the softmax and the predicted class (a tower function)."""
    model = build_model()

    def tower(image):
        logits = model(image, training=False)
        return {"prob": tf.nn.softmax(logits), "pred": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    return PredictConfig(model=model, session_init=checkpoint_dir, tower_func=tower,
                         input_signature=[tf.TensorSpec((None, 8, 8, 1), tf.float32, "image")],
                         output_names=["prob", "pred"])


def run_frozen_graph(path: str):
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    wrapped = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
    fn = wrapped.prune(wrapped.graph.get_tensor_by_name("image:0"),
                       [wrapped.graph.get_tensor_by_name("prob:0"), wrapped.graph.get_tensor_by_name("pred:0")])
    return lambda x: [t.numpy() for t in fn(tf.constant(x))]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--outdir", default=os.path.join("train_log", "export_digits"))
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_val, y_val) = load()

    # 1. Train briefly; ModelSaver checkpoints (model, optimizer, epoch, step).
    trained = build_model()
    trained.compile(optimizer=keras.optimizers.Adam(3e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    checkpoint_dir = os.path.join(args.outdir, "checkpoints")
    trained.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=0,
                callbacks=[ModelSaver(checkpoint_dir, max_to_keep=1)])
    logits = trained.predict(x_val, verbose=0)
    reference = tf.nn.softmax(logits).numpy()

    # 2. Restore into a fresh model and export.
    config = make_config(checkpoint_dir)
    exporter = ModelExporter(config)
    saved_model = exporter.export_serving(os.path.join(args.outdir, "serving"), version=1, overwrite=True)
    frozen = exporter.export_compact(os.path.join(args.outdir, "model.pb"), overwrite=True)
    tflite = exporter.export_tflite(os.path.join(args.outdir, "model.tflite"), overwrite=True)

    # 3. Reload each with its own runtime.
    predictor = OfflinePredictor(config)
    serving = tf.saved_model.load(saved_model).signatures["serving_default"]
    interpreter = tf.lite.Interpreter(model_path=tflite)
    tflite_runner = interpreter.get_signature_runner("serving_default")
    def keras_run(x):
        logits = trained(x, training=False)
        return tf.nn.softmax(logits).numpy(), np.argmax(logits, -1)

    def serving_run(x):
        out = serving(image=tf.constant(x))
        return out["prob"].numpy(), out["pred"].numpy()

    def tflite_run(x):
        out = tflite_runner(image=x)
        return out["prob"], out["pred"]

    runners = {
        "keras model (trained)": (keras_run, None),
        "OfflinePredictor": (predictor, None),
        "SavedModel": (serving_run, saved_model),
        "frozen GraphDef": (run_frozen_graph(frozen), frozen),
        "TFLite": (tflite_run, tflite),
    }
    rows = []
    for name, (run, path) in runners.items():
        run(x_val[:8])  # warm up
        start = time.perf_counter()
        prob, pred = run(x_val)
        ms = (time.perf_counter() - start) * 1e3
        size = None
        if path is not None and os.path.isfile(path):
            size = os.path.getsize(path)
        elif path is not None:
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
        rows.append({"format": name, "max |Δprob|": float(np.abs(prob - reference).max()),
                     "same argmax": f"{int((pred == reference.argmax(1)).sum())}/{len(x_val)}",
                     "val accuracy": float(np.mean(pred == y_val)),
                     "size (KiB)": None if size is None else round(size / 1024, 1),
                     f"{len(x_val)} images (ms)": round(ms, 1)})
    print(tabulate(rows, headers="keys", floatfmt=".3g"))
    return rows


if __name__ == "__main__":
    main()
