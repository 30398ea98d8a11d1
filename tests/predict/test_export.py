"""ModelExporter: each format reloaded by its own runtime gives the model's numbers."""

from __future__ import annotations

from conftest import REPO
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import ModelExporter, OfflinePredictor, PredictConfig, get_current_tower_context
from infer_callbacks.checkpoints import layout as checkpoint
from infer_callbacks.towers.model_desc import ModelDesc

pytestmark = [pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning"),
              pytest.mark.tensorflow_only("PredictConfig, OfflinePredictor and export need TensorFlow")]


class Classifier(ModelDesc):
    def __init__(self):
        self.net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                     keras.layers.Dropout(0.5), keras.layers.Dense(4)])

    def inputs(self):
        return [tf.TensorSpec((None, 8), tf.float32, "x"), tf.TensorSpec((None,), tf.int32, "label")]

    def build_graph(self, x, label):
        logits = self.net(x, training=get_current_tower_context().is_training)
        prob = tf.identity(tf.nn.softmax(logits), name="prob")
        tf.cast(tf.not_equal(tf.argmax(prob, 1, output_type=tf.int32), label), tf.float32, name="wrong")
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label, logits=logits)
        return {"logits": logits, "cost": tf.reduce_mean(loss)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ModelDesc with random non-trivial weights, its checkpoint, and an
    exporter that restores it into a fresh ModelDesc (prob and logits from x)."""
    rng = np.random.default_rng(7)
    desc = Classifier()
    for v in desc.net.weights:
        v.assign(rng.normal(size=v.shape).astype("float32"))
    path = checkpoint.save(desc, tmp_path_factory.mktemp("ckpt") / "ckpt")
    config = PredictConfig(model=Classifier(), session_init=path, input_names=["x"],
                           output_names=["prob", "logits"])
    return desc, ModelExporter(config)


@pytest.fixture
def batches():
    rng = np.random.default_rng(3)
    return [rng.normal(size=(n, 8)).astype("float32") for n in (1, 9, 32)]


def reference(desc, x):
    """The trained model's own numbers (numpy softmax of its logits)."""
    logits = desc.net(x, training=False).numpy().astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {"prob": e / e.sum(axis=1, keepdims=True), "logits": logits}


def test_predictor_of_the_exporter_matches_the_model(trained, batches):
    desc, exporter = trained
    for x in batches:
        prob, logits = exporter.predictor(x)
        ref = reference(desc, x)
        np.testing.assert_allclose(prob, ref["prob"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(logits, ref["logits"], rtol=1e-5, atol=1e-5)
    assert exporter.predictor.tracing_count == 1


def test_export_serving_versioned_reloads_with_same_numbers(trained, batches, tmp_path):
    desc, exporter = trained
    path = exporter.export_serving(str(tmp_path / "digits"), version=3)
    assert path == str(tmp_path / "digits" / "3")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert sorted(os.listdir(tmp_path / "digits")) == ["3"]  # no temporary left over
    loaded = tf.saved_model.load(path)
    serving = loaded.signatures["serving_default"]
    assert list(serving.structured_input_signature[1]) == ["x"]
    assert sorted(serving.structured_outputs) == ["logits", "prob"]
    for x in batches:
        out = serving(x=tf.constant(x))
        ref = reference(desc, x)
        for name in ("prob", "logits"):
            np.testing.assert_allclose(out[name].numpy(), ref[name], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.serve(batches[1])["prob"].numpy(),
                               reference(desc, batches[1])["prob"], rtol=1e-5, atol=1e-6)


def test_export_serving_refuses_non_empty_dir_unless_overwrite(trained, tmp_path):
    _, exporter = trained
    target = tmp_path / "model"
    target.mkdir()
    exporter.export_serving(str(target))  # an empty directory is fine
    with pytest.raises(FileExistsError, match=r"Export directory .*model' exists and is not empty.*overwrite=True"):
        exporter.export_serving(str(target))
    (target / "stale.txt").write_text("old")
    exporter.export_serving(str(target), overwrite=True)
    assert not (target / "stale.txt").exists()
    assert tf.saved_model.contains_saved_model(str(target))
    with pytest.raises(ValueError, match=r"version=-1"):
        exporter.export_serving(str(tmp_path / "m"), version=-1)
    with pytest.raises(ValueError, match=r"version='2'"):
        exporter.export_serving(str(tmp_path / "m"), version="2")


def run_frozen_graph(path, feeds: dict, fetches: list):
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    imported = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
    graph = imported.graph
    fn = imported.prune([graph.get_tensor_by_name(f"{k}:0") for k in feeds],
                        [graph.get_tensor_by_name(f"{k}:0") for k in fetches])
    return graph_def, [t.numpy() for t in fn(*[tf.constant(v) for v in feeds.values()])]


def test_export_compact_frozen_and_pruned(trained, batches, tmp_path):
    desc, exporter = trained
    path = exporter.export_compact(str(tmp_path / "model.pb"))
    for x in batches:
        graph_def, (prob, logits) = run_frozen_graph(path, {"x": x}, ["prob", "logits"])
        ref = reference(desc, x)
        np.testing.assert_allclose(prob, ref["prob"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(logits, ref["logits"], rtol=1e-5, atol=1e-5)
    ops = {node.op for node in graph_def.node}
    # Variables folded into constants; nothing of the label, the loss, or dropout.
    assert not ops & {"VarHandleOp", "ReadVariableOp", "VariableV2", "RandomUniform", "StatelessRandomUniformV2",
                      "SparseSoftmaxCrossEntropyWithLogits", "NotEqual"}
    assert [n.name for n in graph_def.node if n.op == "Placeholder"] == ["x"]
    assert ops <= {"Placeholder", "Const", "MatMul", "BiasAdd", "Relu", "Softmax", "Identity", "NoOp"}
    with pytest.raises(FileExistsError, match=r"model\.pb' already exists.*overwrite=True"):
        exporter.export_compact(path)
    exporter.export_compact(path, overwrite=True)


def test_export_compact_with_label_outputs(trained, tmp_path):
    desc, _ = trained
    exporter = ModelExporter(PredictConfig(model=desc, output_names=["wrong", "cost", "prob"]))
    x = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")
    label = np.arange(6, dtype=np.int32) % 4
    _, (wrong, cost) = run_frozen_graph(exporter.export_compact(str(tmp_path / "m.pb")),
                                        {"x": x, "label": label}, ["wrong", "cost"])
    ref = reference(desc, x)
    np.testing.assert_array_equal(wrong, (ref["prob"].argmax(1) != label).astype("float32"))
    np.testing.assert_allclose(cost, -np.log(ref["prob"][np.arange(6), label]).mean(), rtol=1e-5)


def test_export_compact_tensorpack_style_names(trained, tmp_path):
    """"prob:0" is the node "prob"; an input fetched as an output stays the placeholder."""
    desc, _ = trained
    exporter = ModelExporter(PredictConfig(model=desc, input_names=["x"], output_names=["prob:0", "x"]))
    x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    graph_def, (prob, x_out) = run_frozen_graph(exporter.export_compact(str(tmp_path / "m.pb")),
                                                {"x": x}, ["prob", "x"])
    np.testing.assert_allclose(prob, reference(desc, x)["prob"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(x_out, x)
    assert [n.name for n in graph_def.node if n.op == "Placeholder"] == ["x"]


def test_export_tflite_same_numbers(trained, batches, tmp_path):
    desc, exporter = trained
    path = exporter.export_tflite(str(tmp_path / "model.tflite"))
    interpreter = tf.lite.Interpreter(model_path=path)
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["x"], "outputs": ["logits", "prob"]}}
    runner = interpreter.get_signature_runner("serving_default")
    for x in batches:  # any batch size: the signature runner resizes the input
        out = runner(x=x)
        ref = reference(desc, x)
        np.testing.assert_allclose(out["prob"], ref["prob"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-4, atol=1e-4)
    with pytest.raises(FileExistsError, match=r"model\.tflite' already exists"):
        exporter.export_tflite(path)


def test_keras_model_export_serving_and_tflite(tmp_path):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="tanh"),
                              keras.layers.Dense(2)])
    path = str(tmp_path / "keras.weights.h5")
    model.save_weights(path)
    exporter = ModelExporter(PredictConfig(model=keras.models.clone_model(model), session_init=path))
    x = np.random.default_rng(1).normal(size=(7, 5)).astype("float32")
    expected = model(x).numpy()
    served = tf.saved_model.load(exporter.export_serving(str(tmp_path / "sm"), version=1))
    np.testing.assert_allclose(served.signatures["serving_default"](input=tf.constant(x))["output"],
                               expected, rtol=1e-5, atol=1e-6)
    runner = tf.lite.Interpreter(model_path=exporter.export_tflite(str(tmp_path / "k.tflite"))) \
        .get_signature_runner()
    np.testing.assert_allclose(runner(input=x)["output"], expected, rtol=1e-4, atol=1e-5)


def test_exports_need_valid_names(trained):
    desc, _ = trained

    def tower(x):
        return {"bad name": desc.net(x)}

    config = PredictConfig(model=desc, tower_func=tower,
                           input_signature=[tf.TensorSpec((None, 8), tf.float32, "x")])
    (out,) = OfflinePredictor(config)(np.zeros((2, 8), "float32"))  # fine for the predictor
    assert out.shape == (2, 4)
    with pytest.raises(ValueError, match=r"'bad name' is not a valid TensorFlow op name"):
        ModelExporter(config).compact_graph_def()


def test_example_export_and_serve(tmp_path):
    import importlib.util

    repo = REPO
    spec = importlib.util.spec_from_file_location(
        "export_and_serve", os.path.join(repo, "examples", "export_and_serve.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rows = example.main(["--epochs", "1", "--outdir", str(tmp_path)])
    assert [r["format"] for r in rows] == ["keras model (trained)", "OfflinePredictor", "SavedModel",
                                           "frozen GraphDef", "TFLite"]
    for row in rows:
        assert row["max |Δprob|"] < 1e-5, row
        assert row["same argmax"] == "397/397", row


def test_tower_func_without_a_model_exports_its_captured_variables(tmp_path):
    w = tf.Variable([[2.0], [3.0]])

    def tower(x):
        return {"y": tf.matmul(x, w) + 1.0}

    exporter = ModelExporter(PredictConfig(tower_func=tower,
                                           input_signature=[tf.TensorSpec((None, 2), tf.float32, "x")]))
    x = np.array([[1.0, 1.0], [0.5, -1.0]], "float32")
    loaded = tf.saved_model.load(exporter.export_serving(str(tmp_path / "sm")))
    np.testing.assert_allclose(loaded.signatures["serving_default"](x=tf.constant(x))["y"].numpy(),
                               [[6.0], [-1.0]])
    _, (y,) = run_frozen_graph(exporter.export_compact(str(tmp_path / "m.pb")), {"x": x}, ["y"])
    np.testing.assert_allclose(y, [[6.0], [-1.0]])


def test_exports_are_readable_by_others(trained, tmp_path):
    # A serving process often runs as another user: the exports get the
    # umask's permissions, not the 0600/0700 of a temporary file.
    _, exporter = trained
    old = os.umask(0o022)
    try:
        served = exporter.export_serving(str(tmp_path / "serving"), version=1)
        exporter.export_compact(str(tmp_path / "m.pb"))
    finally:
        os.umask(old)
    assert os.stat(served).st_mode & 0o777 == 0o755
    assert os.stat(tmp_path / "m.pb").st_mode & 0o777 == 0o644
