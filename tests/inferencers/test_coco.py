"""COCOMeanAP: pycocotools' 12 numbers over the whole set, for any batch
split, with padded detections, box formats, spilled rows, both backends."""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from infer_callbacks import COCOMeanAP  # noqa: E402
from infer_callbacks.inferencers.whole_set.coco import COCO_KEYS  # noqa: E402
from conftest import random_splits
from helpers.inferencers import check_split_invariance  # noqa: E402

FIELDS = ["boxes", "scores", "classes", "gt_boxes", "gt_classes"]


def synthetic(rng, n, g=5, d=12):
    """Padded ground truth (class -1) and noisy detections of it, xyxy."""
    gt_boxes, gt_classes = np.zeros((n, g, 4)), -np.ones((n, g), np.int64)
    boxes, scores, classes = np.zeros((n, d, 4)), np.zeros((n, d)), -np.ones((n, d), np.int64)
    for i in range(n):
        k = rng.integers(0, g + 1)
        xy, wh = rng.uniform(0, 300, (k, 2)), rng.uniform(4, 160, (k, 2))
        gt_boxes[i, :k], gt_classes[i, :k] = np.c_[xy, xy + wh], rng.integers(1, 5, k)
        m = rng.integers(0, d + 1)
        src = rng.integers(0, max(k, 1), m)
        base = gt_boxes[i, src] if k else np.c_[rng.uniform(0, 300, (m, 2)), rng.uniform(300, 400, (m, 2))]
        boxes[i, :m] = base + rng.normal(0, 6, (m, 4))
        scores[i, :m] = np.round(rng.random(m), 2)
        classes[i, :m] = np.where(rng.random(m) < 0.8, gt_classes[i, src] if k else 1, rng.integers(1, 5, m))
    return dict(zip(FIELDS, (boxes, scores, classes, gt_boxes, gt_classes)))


def pycocotools_reference(data):
    """COCOeval on the whole set, written out independently (xyxy -> xywh)."""
    images, annotations, results = [], [], []
    for i in range(len(data["boxes"])):
        images.append({"id": i + 1})
        for b, c in zip(data["gt_boxes"][i], data["gt_classes"][i]):
            if c >= 0:
                w, h = b[2] - b[0], b[3] - b[1]
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c),
                                    "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
        for b, s, c in zip(data["boxes"][i], data["scores"][i], data["classes"][i]):
            if c >= 0:
                results.append({"image_id": i + 1, "category_id": int(c), "score": float(s),
                                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c} for c in range(1, 5)]}
        gt.createIndex()
        run = COCOeval(gt, gt.loadRes(results), "bbox")
        run.evaluate(); run.accumulate(); run.summarize()
    return {f"validation_{k}": v for k, v in zip(COCO_KEYS, run.stats)}


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_equals_pycocotools_on_the_whole_set(rng, backend, tmp_path):
    pytest.importorskip(backend)
    data = synthetic(rng, 61)
    expected = pycocotools_reference(data)
    assert 0.05 < expected["validation_AP"] < 0.95
    make = lambda: COCOMeanAP(backend=backend, max_memory_mb=0.002, tmpdir=tmp_path)  # noqa: E731
    check_split_invariance(make, data, expected, random_splits(rng, 61, 9), rtol=1e-12)
    assert os.listdir(tmp_path) == []


def test_box_formats_and_counts(rng):
    data = synthetic(rng, 20)
    expected = pycocotools_reference(data)
    xyxy = data["boxes"]
    xywh = dict(data, boxes=np.concatenate([xyxy[..., :2], xyxy[..., 2:] - xyxy[..., :2]], -1),
                gt_boxes=np.concatenate([data["gt_boxes"][..., :2],
                                         data["gt_boxes"][..., 2:] - data["gt_boxes"][..., :2]], -1))
    check_split_invariance(lambda: COCOMeanAP(box_format="xywh"), xywh, expected, random_splits(rng, 20, 6))
    counted = dict(data, num=(data["classes"] >= 0).sum(1), classes=np.maximum(data["classes"], 0))
    counted["boxes"] = np.where((data["classes"] >= 0)[..., None], xyxy, 0)
    # With counts, rows past the count are padding whatever their class.
    order = np.argsort(data["classes"] < 0, axis=1, kind="stable")
    for key in ("boxes", "scores", "classes"):
        counted[key] = np.take_along_axis(counted[key], order[..., None] if key == "boxes" else order, 1)
    check_split_invariance(lambda: COCOMeanAP(num_detections="num"), counted, expected, random_splits(rng, 20, 6))


def test_no_detections_and_errors():
    data = {k: v[:, :0] if k in ("boxes", "scores", "classes") else v for k, v in synthetic(np.random.default_rng(1), 4).items()}
    from helpers.inferencers import run_inferencer
    logs, _, _ = run_inferencer(COCOMeanAP(), data, [4])
    assert all(v == -1.0 for v in logs.values())
    with pytest.raises(ValueError, match="box_format='xxyy'"):
        COCOMeanAP(box_format="xxyy")
    with pytest.raises(ValueError, match="backend='detectron'"):
        COCOMeanAP(backend="detectron")
