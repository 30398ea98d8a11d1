"""Whole-set metrics driven by the runner: in ``model.fit`` on the engine's
path (sample weights from the validation set), and with
DataParallelInferenceRunner on 1-3 logical devices in a fresh process: the
same numbers as scikit-learn and pycocotools on the whole set, batch sizes
that do not divide it."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import average_precision_score, roc_auc_score

from conftest import run_python
from infer_callbacks import AUC, InferenceRunner, ScalarStats


def test_auc_in_fit_with_sample_weights(rng):
    n = 203
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, 0] + rng.normal(size=n) > 0).astype("float32")
    w = rng.uniform(0.2, 2.0, n).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    val = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(19)
    runner = InferenceRunner(val, [ScalarStats("loss"), AUC("label", "output"), AUC(curve="PR")])
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[runner])
    p = model.predict(x, verbose=0)[:, 0]
    np.testing.assert_allclose(history.history["validation_auc"][-1], roc_auc_score(y, p, sample_weight=w),
                               rtol=1e-7)
    np.testing.assert_allclose(history.history["validation_pr_auc"][-1],
                               average_precision_score(y, p, sample_weight=w), rtol=1e-7)


SCENARIO = r'''
import json
import numpy as np, keras, tensorflow as tf
from sklearn.metrics import average_precision_score, roc_auc_score
from infer_callbacks import AUC, COCOMeanAP, DataParallelInferenceRunner, InferenceRunner, Sliced

rng = np.random.default_rng(0)
n, c = 97, 4
x = rng.normal(size=(n, 6)).astype("float32")
y = rng.integers(0, c, n).astype("int32")
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(c, activation="softmax")])
model.compile(loss="sparse_categorical_crossentropy")
probs = model.predict(x, verbose=0).astype(np.float64)
onehot = np.eye(c)[y]
expected = {"validation_auc": roc_auc_score(y, probs, multi_class="ovr"),
            "validation_pr_auc": average_precision_score(onehot, probs, average="micro")}
out = {"expected": expected}
for batch in (10,):  # 10 batches: the last round of 3 devices has one
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    for name, devices in (("plain", 0), ("dp1", 1), ("dp2", 2), ("dp3", 3)):
        infs = [AUC(), AUC(curve="PR", average="micro")]
        runner = (InferenceRunner(val, infs) if not devices else
                  DataParallelInferenceRunner(val, infs, [f"/cpu:{i}" for i in range(devices)]))
        runner.set_model(model)
        out[f"{name}-{batch}"] = runner.trigger()
# Whole-set metrics of values the dataset carries (a tower that passes them through):
# COCO boxes per image and a score sliced by a tag.
k = 23
boxes = rng.uniform(0, 100, (k, 3, 2))
gt = np.concatenate([boxes, boxes + rng.uniform(5, 40, (k, 3, 2))], -1).astype("float32")
det = (gt + rng.normal(0, 3, gt.shape)).astype("float32")
cls = rng.integers(-1, 3, (k, 3))
items = {"boxes": det, "scores": rng.random((k, 3)).astype("float32"), "classes": cls, "gt_boxes": gt,
         "gt_classes": cls, "score": rng.random(k).astype("float32"), "label": rng.integers(0, 2, k),
         "tag": np.arange(k) % 2}
ds = tf.data.Dataset.from_tensor_slices(items).batch(4)
for name, devices in (("plain", 0), ("dp2", 2), ("dp3", 3)):
    infs = [COCOMeanAP(), Sliced(AUC("label", "score"), by="tag")]
    runner = (InferenceRunner(ds, infs, tower_func=lambda **batch: {}) if not devices else
              DataParallelInferenceRunner(ds, infs, [f"/cpu:{i}" for i in range(devices)],
                                          tower_func=lambda **batch: {}))
    out[f"items-{name}"] = runner.trigger()
one = COCOMeanAP(); one.before_inference(); one.on_fetches([items[n] for n in one.get_fetches()], k)
out["items-expected"] = {**one.after_inference(),
                         "validation_auc": roc_auc_score(items["label"], items["score"]),
                         **{f"validation_auc/{t}": roc_auc_score(items["label"][items["tag"] == t],
                                                                 items["score"][items["tag"] == t]) for t in (0, 1)}}
print("RESULT" + json.dumps(out))
'''


@pytest.mark.not_on_backend("torch", reason="several logical CPU devices: torch has one CPU device")
def test_whole_set_metrics_on_one_to_three_devices():
    result = run_python(SCENARIO, devices=3, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT", 1)[1])
    expected = out.pop("expected")
    items_expected = out.pop("items-expected")
    assert len(items_expected) == 15
    for run in ("plain", "dp2", "dp3"):
        results = out.pop(f"items-{run}")
        assert set(results) == set(items_expected), run
        for key, value in items_expected.items():
            np.testing.assert_allclose(results[key], value, rtol=1e-9, err_msg=f"{run} {key}")
    assert len(out) == 4
    for run, results in out.items():
        for key, value in expected.items():
            # float32 outputs of the tower vs float64 probabilities: rank ties may differ at 1e-7
            np.testing.assert_allclose(results[key], value, rtol=1e-6, err_msg=run)
