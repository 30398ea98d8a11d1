"""GatherOutputs against numpy / scikit-learn references over the whole set at
once, whatever the batch split and memory budget, plus the end-to-end tests
of the three metrics inferencers together: the README snippet in ``fit``
(which also checks the ConfusionMatrix image in TensorBoard), two logical
devices, two workers, and the README's COCO mAP recipe.

Unit tests drive the inferencer through the runner-facing methods on numpy
batches (the shared helpers of test_base.py).
"""

from __future__ import annotations

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, confusion_matrix, precision_score, recall_score
from sklearn.metrics import roc_auc_score

from conftest import REPO, random_splits, run_python
from helpers.inferencers import check_split_invariance, feed, numpy_mean_iou, reference_confusion
from infer_callbacks.inferencers.confusion import ConfusionMatrix, render_matrix
from infer_callbacks.inferencers.gather import GatherOutputs
from infer_callbacks.inferencers.keras_metric import KerasMetric


class Recorder:
    """A score_fn that keeps (copies of) what it was given."""

    def __init__(self, fn=None):
        self.fn = fn
        self.seen = None
        self.spill_files = None

    def __call__(self, out):
        self.seen = {k: np.array(v) for k, v in out.items()}
        self.types = {k: type(v) for k, v in out.items()}
        return self.fn(out) if self.fn else {"n": len(next(iter(out.values())))}


def test_gather_average_precision_matches_sklearn_with_and_without_spill(rng):
    n = 500
    label = rng.integers(0, 2, n)
    score = rng.random(n) + 0.3 * label
    expected = {"val_ap": average_precision_score(label, score)}
    fn = lambda out: {"val_ap": average_precision_score(out["label"], out["score"])}  # noqa: E731
    for limit in (256, 0.001):  # 0.001 MiB ~ 1 KiB: spills every few batches
        check_split_invariance(lambda: GatherOutputs(["score", "label"], fn, max_memory_mb=limit),
                         {"score": score, "label": label}, expected, random_splits(rng, n, 60))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=12),
       limit=st.sampled_from([1e-5, 2e-4, 1.0]))
def test_gather_keeps_order_and_equals_concatenation(sizes, limit):
    n = sum(sizes)
    arrays = {"x": np.arange(n * 3, dtype=np.float32).reshape(n, 3),
              "id": np.arange(n, dtype=np.int64)}
    rec = Recorder()
    inf = GatherOutputs(["x", "id"], rec, max_memory_mb=limit)
    results, _ = feed(inf, arrays, sizes)
    assert results == {"n": float(n)}
    for k, v in arrays.items():
        assert rec.seen[k].dtype == v.dtype and rec.seen[k].shape == v.shape
        np.testing.assert_array_equal(rec.seen[k], v)
    assert inf.spill_dir is None


def test_gather_spills_to_files_that_are_deleted(rng, tmp_path):
    n = 400
    arrays = {"emb": rng.normal(size=(n, 16)).astype(np.float32), "label": rng.integers(0, 2, n)}
    seen = {}

    def score(out):
        seen["dir"] = inf.spill_dir
        seen["files"] = sorted(os.listdir(inf.spill_dir))
        seen["sizes"] = [os.path.getsize(os.path.join(inf.spill_dir, f)) for f in seen["files"]]
        seen["memmap"] = all(isinstance(v, np.memmap) for v in out.values())
        return {"val_sum": float(out["emb"].sum(dtype=np.float64)), "val_pos": out["label"].sum()}

    inf = GatherOutputs(["emb", "label"], score, max_memory_mb=0.01, tmpdir=tmp_path)
    results, _ = feed(inf, arrays, random_splits(rng, n, 50))
    assert seen["memmap"] and inf.num_spills >= 2
    assert seen["sizes"] == [arrays["emb"].nbytes, arrays["label"].nbytes]
    assert inf.peak_held_bytes <= 0.01 * 2**20 + 50 * (16 * 4 + 8)  # budget + one batch
    assert os.path.dirname(seen["dir"]) == str(tmp_path)
    assert not os.path.exists(seen["dir"]) and os.listdir(tmp_path) == []
    np.testing.assert_allclose(results["val_sum"], arrays["emb"].sum(dtype=np.float64), rtol=1e-12)
    assert results["val_pos"] == arrays["label"].sum()


def test_gather_spills_at_the_end_when_concatenating_would_exceed_the_budget(tmp_path):
    kinds = {}

    def score(out):
        kinds["memmap"] = isinstance(out["x"], np.memmap)
        return {"s": out["x"].sum()}

    x = np.arange(1000, dtype=np.float64)  # 8000 bytes: fits once, not twice, in 10 KiB
    for limit, spilled in ((10 / 1024, True), (20 / 1024, False)):
        inf = GatherOutputs(["x"], score, max_memory_mb=limit, tmpdir=tmp_path)
        assert feed(inf, {"x": x}, [400, 0, 600])[0] == {"s": x.sum()}
        assert kinds["memmap"] is spilled and inf.num_spills == int(spilled)
    assert os.listdir(tmp_path) == []


def test_gather_cleans_up_when_score_fn_raises_or_run_is_aborted(rng, tmp_path):
    arrays = {"x": rng.normal(size=(100, 8))}

    def boom(out):
        assert os.listdir(tmp_path)
        raise RuntimeError("score failed")

    inf = GatherOutputs(["x"], boom, max_memory_mb=0.001, tmpdir=tmp_path)
    with pytest.raises(RuntimeError, match="score failed"):
        feed(inf, arrays, [30, 30, 40])
    assert os.listdir(tmp_path) == []

    # A run that stopped half-way (an error in another inferencer): the next
    # run, and garbage collection, remove its files.
    inf = GatherOutputs(["x"], lambda out: {"n": len(out["x"])}, max_memory_mb=0.001, tmpdir=tmp_path)
    inf.before_inference()
    inf.on_fetches([arrays["x"][:60]], 60)
    inf.on_fetches([arrays["x"][60:]], 40)
    assert len(os.listdir(tmp_path)) == 1
    assert feed(inf, arrays, [100])[0] == {"n": 100.0}
    assert os.listdir(tmp_path) == []
    inf.before_inference()
    inf.on_fetches([arrays["x"]], 100)
    assert len(os.listdir(tmp_path)) == 1
    del inf
    import gc

    gc.collect()
    assert os.listdir(tmp_path) == []


def test_gather_bad_input():
    with pytest.raises(ValueError, match="max_memory_mb=0"):
        GatherOutputs(["x"], lambda out: {}, max_memory_mb=0)
    with pytest.raises(ValueError, match="max_memory_mb=-1"):
        GatherOutputs(["x"], lambda out: {}, max_memory_mb=-1)
    with pytest.raises(TypeError, match="score_fn"):
        GatherOutputs(["x"], "not callable")

    inf = GatherOutputs(["score", "label"], lambda out: {})
    inf.before_inference()
    with pytest.raises(ValueError, match=r"'score' shape \(4,\).*'label' shape \(3,\)"):
        inf.on_fetches([np.zeros(4), np.zeros(3)], 4)
    inf.before_inference()
    inf.on_fetches([np.zeros((2, 5)), np.zeros(2)], 2)
    with pytest.raises(ValueError, match=r"'score' changed from per-example shape \(5,\)"):
        inf.on_fetches([np.zeros((2, 6)), np.zeros(2)], 2)

    def per_class(out):
        return {"val_ap": np.array([0.5, 0.7])}

    # Results never stop training: one key per element, a warning naming the key.
    with pytest.warns(UserWarning, match=r"GatherOutputs\('x'\).*'val_ap'.*shape \(2,\)"):
        logs, _ = feed(GatherOutputs(["x"], per_class), {"x": np.zeros(3)}, [3])
    assert logs == {"val_ap_0": 0.5, "val_ap_1": 0.7}
    with pytest.warns(UserWarning, match="not a dict"):
        assert feed(GatherOutputs(["x"], lambda out: 0.5), {"x": np.zeros(3)}, [3])[0] == {}


# --------------------------------------------------------------------------
# End to end: the snippet in model.fit on scikit-learn's digits,
# all three metrics inferencers together


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def digits_fit(tmp_path_factory):
    """The README's snippet, on the digits example's data and model."""
    import sys

    sys.path.insert(0, os.path.join(REPO, "examples"))
    from keras_digits import build_model, load

    logdir = str(tmp_path_factory.mktemp("logs"))
    spill = str(tmp_path_factory.mktemp("spill"))
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_val, y_val) = load()
    train_ds = tf.data.Dataset.from_tensor_slices((x_train, y_train)).batch(64)
    val_ds = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(50)
    model = build_model()

    def score(out):  # one-vs-rest AUC and micro average precision over the whole set
        prob, onehot = softmax(out["output"]), np.eye(10)[out["label"]]
        return {"validation_auc_ovr": roc_auc_score(out["label"], prob, multi_class="ovr"),
                "validation_ap": average_precision_score(onehot, prob, average="micro"),
                "validation_spilled": float(isinstance(out["output"], np.memmap))}

    rec = Recorder(score)
    cm = ConfusionMatrix("label", "output", num_classes=10)
    printed = []

    class Capture:
        def write(self, s):
            printed.append(s)

        def flush(self):
            pass

    from infer_callbacks import InferenceRunner, JSONWriter, Monitors, ScalarPrinter, TFEventWriter

    history = model.fit(train_ds, epochs=2, verbose=0, callbacks=[
        Monitors([ScalarPrinter(file=Capture()), JSONWriter(logdir), TFEventWriter(logdir)]),
        InferenceRunner(val_ds, [
            KerasMetric(keras.metrics.SparseTopKCategoricalAccuracy(k=3), ["label", "output"]),
            KerasMetric(keras.metrics.MeanIoU(num_classes=10, sparse_y_pred=False),
                        ["label", "output"]),
            GatherOutputs(["output", "label"], rec, max_memory_mb=0.01, tmpdir=spill),
            cm,
        ]),
    ])
    return dict(model=model, x_val=x_val, y_val=y_val, rec=rec, cm=cm, history=history,
                logdir=logdir, spill=spill, printed="".join(printed))


def test_fit_gathers_in_order_and_scores(digits_fit):
    f = digits_fit
    logits = f["model"].predict(f["x_val"], verbose=0)
    y = f["y_val"]
    np.testing.assert_array_equal(f["rec"].seen["label"], y)
    np.testing.assert_allclose(f["rec"].seen["output"], logits, rtol=1e-4, atol=1e-5)
    hist = f["history"].history
    assert hist["validation_spilled"] == [1.0, 1.0] and os.listdir(f["spill"]) == []
    prob = softmax(logits)
    np.testing.assert_allclose(hist["validation_auc_ovr"][-1],
                               roc_auc_score(y, prob, multi_class="ovr"), rtol=1e-4)
    np.testing.assert_allclose(hist["validation_ap"][-1],
                               average_precision_score(np.eye(10)[y], prob, average="micro"), rtol=1e-4)
    top3 = np.argsort(-logits, axis=1)[:, :3]
    np.testing.assert_allclose(hist["validation_sparse_top_k_categorical_accuracy"][-1],
                               np.mean((top3 == y[:, None]).any(axis=1)), rtol=1e-6)
    pred = logits.argmax(1)
    np.testing.assert_array_equal(f["cm"].matrix, confusion_matrix(y, pred, labels=range(10)))
    recall = recall_score(y, pred, labels=range(10), average=None, zero_division=0)
    precision = precision_score(y, pred, labels=range(10), average=None, zero_division=0)
    np.testing.assert_allclose(hist["validation_mean_recall"][-1], recall.mean())
    np.testing.assert_allclose(hist["validation_mean_precision"][-1], precision.mean())
    assert "validation_recall_3" not in hist  # per-class values go to the monitors only
    with open(os.path.join(f["logdir"], "stats.json")) as fh:
        last = json.load(fh)[-1]
    np.testing.assert_allclose([last[f"validation_recall_{c}"] for c in range(10)], recall)
    np.testing.assert_allclose([last[f"validation_precision_{c}"] for c in range(10)], precision)
    np.testing.assert_allclose(hist["validation_mean_io_u"][-1], numpy_mean_iou(y, pred, 10), rtol=1e-5)


def test_fit_writes_confusion_image_to_tensorboard_only(digits_fit):
    f = digits_fit
    images = []
    for path in glob.glob(os.path.join(f["logdir"], "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "validation_confusion_matrix":
                    images.append((event.step, value))
    assert len(images) == 2  # one per epoch
    step, value = images[-1]
    assert value.metadata.plugin_data.plugin_name == "images"
    width, height, png = tf.make_ndarray(value.tensor)
    decoded = tf.io.decode_png(png).numpy()
    np.testing.assert_array_equal(decoded, render_matrix(f["cm"].matrix))
    assert (int(width), int(height)) == (decoded.shape[1], decoded.shape[0])
    assert step == int(f["model"].optimizer.iterations.numpy())
    with open(os.path.join(f["logdir"], "stats.json")) as fh:
        stats = json.load(fh)
    assert "validation_recall_3" in stats[-1] and "validation_confusion_matrix" not in stats[-1]
    assert "validation_recall_3" in f["printed"] and "confusion_matrix" not in f["printed"]


@pytest.mark.not_on_backend("torch", reason="PyTorch has one CPU device; several devices need GPUs")
def test_gather_order_across_two_logical_devices():
    result = run_python("""
        import numpy as np, tensorflow as tf, keras
        from infer_callbacks import DataParallelInferenceRunner, GatherOutputs, KerasMetric, ConfusionMatrix
        x = np.arange(203, dtype=np.float32)
        label = (np.arange(203) * 7 % 3).astype(np.int64)
        ds = tf.data.Dataset.from_tensor_slices((x, label)).batch(20)
        got = {}
        def score(out):
            got.update({k: np.array(v) for k, v in out.items()})
            return {"n": len(out["x"])}
        def tower(x, label):
            return {"y": x * 2, "pred": keras.ops.cast(x, "int32") % 3}
        cm = ConfusionMatrix("label", "pred", 3)
        runner = DataParallelInferenceRunner(ds, [
            GatherOutputs(["x", "y", "label"], score, max_memory_mb=0.0005),
            KerasMetric(keras.metrics.Accuracy(), ["label", "pred"]), cm], ["/cpu:0", "/cpu:1"],
            tower_func=tower)
        results = runner.trigger()
        assert results["n"] == 203, results
        np.testing.assert_array_equal(got["x"], x)
        np.testing.assert_array_equal(got["y"], 2 * x)
        np.testing.assert_array_equal(got["label"], label)
        pred = np.arange(203) % 3
        np.testing.assert_allclose(results["validation_accuracy"], np.mean(pred == label), rtol=1e-6)
        ref = np.zeros((3, 3), np.int64); np.add.at(ref, (label, pred), 1)
        np.testing.assert_array_equal(cm.matrix, ref)
        print("OK")
    """, devices=2, timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def _docs_block(heading: str) -> str:
    with open(os.path.join(REPO, "docs", "metrics.md")) as f:
        text = f.read()
    section = text[text.index(heading):]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_coco_map_recipe_on_synthetic_ground_truth(rng):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO

    namespace: dict = {"np": np}
    code = _docs_block("## Recipe: COCO-style mAP").split("\nInferenceRunner(")[0]  # the class, not its use
    exec(code, namespace)  # noqa: S102 - the docs' code
    num_images, k = 12, 5
    images, annotations = [], []
    truth = np.zeros((num_images, k, 4)), np.zeros((num_images, k), np.int64), np.zeros(num_images, np.int64)
    for i in range(num_images):
        images.append({"id": 100 + i, "width": 200, "height": 200})
        n = int(rng.integers(1, k + 1))
        truth[2][i] = n
        for j in range(n):
            x, y = rng.uniform(0, 120, 2)
            w, h = rng.uniform(20, 70, 2)
            cat = int(rng.integers(1, 4))
            truth[0][i, j], truth[1][i, j] = (x, y, w, h), cat
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": cat,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": c, "name": str(c)} for c in (1, 3, 2)]}
    with __import__("contextlib").redirect_stdout(__import__("io").StringIO()):
        gt.createIndex()
    boxes, classes, num = truth
    arrays = {"image_id": np.arange(100, 100 + num_images), "boxes": boxes,
              "scores": np.tile(np.linspace(1, 0.5, k), (num_images, 1)), "classes": classes,
              "num_detections": num}
    make = lambda: namespace["CocoMAP"](gt)  # noqa: E731
    perfect = {"validation_mAP": 1.0, "validation_AP50": 1.0}
    check_split_invariance(make, arrays, perfect, random_splits(rng, num_images, 5), rtol=1e-9)
    # Drop every detection of the last 3 images: their ground truth is missed.
    # With exact boxes, the AP of category c is COCO's 101-point interpolation
    # of a precision of 1 up to its recall r_c: (floor(100 r_c) + 1) / 101.
    kept = np.arange(num_images) < 9
    missing = dict(arrays, num_detections=np.where(kept, num, 0))
    ap = []
    for c in (1, 2, 3):
        per_image = [(classes[i, :num[i]] == c).sum() for i in range(num_images)]
        total = sum(per_image)
        if total:
            recall = sum(p for p, keep in zip(per_image, kept) if keep) / total
            ap.append((np.floor(100 * recall + 1e-9) + 1) / 101)
    expected = {"validation_mAP": np.mean(ap), "validation_AP50": np.mean(ap)}
    assert expected["validation_mAP"] < 1.0
    check_split_invariance(make, missing, expected, random_splits(rng, num_images, 4), rtol=1e-9)


MULTIWORKER = """
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, tensorflow as tf, keras
from infer_callbacks import (DistributedTrainer, TrainConfig, launch_train_with_config, ModelDesc,
                             InferenceRunner, GatherOutputs, ConfusionMatrix, KerasMetric)

trainer = DistributedTrainer(collective_timeout=60)
n = 203
x = np.arange(n, dtype=np.float32)[:, None]
label = np.arange(n, dtype=np.int32)

class Tiny(ModelDesc):
    def __init__(self):
        self.net = keras.layers.Dense(1)
    def inputs(self):
        return [tf.TensorSpec((None, 1), tf.float32, "x"), tf.TensorSpec((None,), tf.int32, "label")]
    def build_graph(self, x, label):
        tf.identity(label % 3, name="true3")
        tf.identity((label // 2) % 3, name="pred3")
        return tf.reduce_mean(tf.square(self.net(x)), name="cost")
    def optimizer(self):
        return keras.optimizers.SGD(0.0)

def score(out):
    return {"val_in_order": float(np.array_equal(out["label"], label)), "val_n": len(out["label"])}

cm = ConfusionMatrix("true3", "pred3", 3, image=False)
runner = InferenceRunner(tf.data.Dataset.from_tensor_slices((x, label)).batch(20), [
    GatherOutputs(["label"], score, max_memory_mb=0.0005),
    KerasMetric(keras.metrics.Accuracy(), ["true3", "pred3"]), cm], verbose=False)
config = TrainConfig(model=Tiny(), data=tf.data.Dataset.from_tensor_slices((x, label)).batch(32),
                     max_epoch=1, verbose=0, callbacks=[runner])
history = launch_train_with_config(config, trainer)
print("RESULT " + json.dumps({"history": history.history, "matrix": cm.matrix.tolist()}))
"""


@pytest.mark.timeout(240)
@pytest.mark.tensorflow_only("two workers: MultiWorkerMirroredStrategy through the trainer host")
def test_gather_order_and_exact_metrics_on_two_workers():
    """Two worker processes (MultiWorkerMirroredStrategy via the trainer host):
    each gathers the whole validation set in dataset order, spilling, and
    computes the same exact numbers."""
    import socket
    import subprocess
    import sys

    from conftest import REPO

    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]}
    for s in socks:
        s.close()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               CUDA_VISIBLE_DEVICES="-1")
    procs = [subprocess.Popen(
        [sys.executable, "-c", MULTIWORKER], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=dict(env, TF_CONFIG=json.dumps({"cluster": cluster,
                                                       "task": {"type": "worker", "index": i}})))
        for i in range(2)]
    reports = []
    try:
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=200)
            lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
            assert p.returncode == 0 and lines, f"worker {i} failed:\n{err[-3000:]}"
            reports.append(json.loads(lines[-1][len("RESULT "):]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    ids = np.arange(203)
    true3, pred3 = ids % 3, (ids // 2) % 3
    for r in reports:
        hist = r["history"]
        assert hist["val_in_order"] == [1.0] and hist["val_n"] == [203.0]
        np.testing.assert_array_equal(r["matrix"], reference_confusion(true3, pred3, 3))
        np.testing.assert_allclose(hist["validation_accuracy"], [np.mean(true3 == pred3)], rtol=1e-6)
        assert hist == reports[0]["history"]
