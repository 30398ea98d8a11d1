"""``COCOMeanAP``: COCO's box AP/AR breakdown over the whole validation set.

Detections and ground truth are gathered per image as rows (spilled to disk
beyond ``max_memory_mb``) and scored once at the end by pycocotools' rule,
with ``faster-coco-eval`` (the same numbers, several times faster) when it
is installed, else ``pycocotools``. Install one with
``pip install 'infer_callbacks[coco]'``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from typing import Any

import numpy as np

from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.inferencers.whole_set.state import RowStore, SpillDir
from infer_callbacks.inferencers.whole_set.text_base import require

__all__ = ["COCOMeanAP", "COCO_KEYS"]

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_FORMATS = ("xyxy", "yxyx", "xywh", "cxcywh")
_BACKENDS = ("auto", "faster_coco_eval", "pycocotools")


def to_xywh(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """``[..., 4]`` boxes in ``box_format`` as COCO's ``[x, y, width, height]``."""
    b = np.asarray(boxes, np.float64)
    if box_format == "xywh":
        return b
    if box_format == "cxcywh":
        return np.stack([b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2, b[..., 2], b[..., 3]], -1)
    if box_format == "yxyx":
        b = b[..., [1, 0, 3, 2]]
    return np.stack([b[..., 0], b[..., 1], b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], -1)


def evaluate(gt_rows: np.ndarray, det_rows: np.ndarray, num_images: int, *, backend: str = "auto",
             max_detections: int = 100) -> np.ndarray:
    """COCOeval's 12 ``stats`` for ground truth rows ``[image, x, y, w, h,
    class]`` and detection rows ``[image, x, y, w, h, score, class]``
    (images ``1..num_images``)."""
    if backend == "auto":
        try:
            require("faster_coco_eval", "coco", "COCOMeanAP")
            backend = "faster_coco_eval"
        except ImportError:
            backend = "pycocotools"
    module = require(backend, "coco", "COCOMeanAP")
    categories = sorted({int(c) for c in gt_rows[:, 5]} | {int(c) for c in det_rows[:, 6]})
    dataset = {
        "images": [{"id": i} for i in range(1, num_images + 1)],
        "annotations": [{"id": k, "image_id": int(r[0]), "bbox": [float(v) for v in r[1:5]],
                         "area": float(r[3] * r[4]), "category_id": int(r[5]), "iscrowd": 0}
                        for k, r in enumerate(gt_rows, 1)],
        "categories": [{"id": c, "name": str(c)} for c in categories],
    }
    if not len(det_rows):
        return np.full(len(COCO_KEYS), -1.0)  # what COCOeval reports without detections
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        if backend == "faster_coco_eval":
            gt = module.COCO(dataset)
            run = module.COCOeval_faster(gt, gt.loadRes(np.asarray(det_rows)), iouType="bbox",
                                         print_function=lambda *a, **k: None)
        else:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
            gt = COCO()
            gt.dataset = dataset
            gt.createIndex()
            run = COCOeval(gt, gt.loadRes(np.asarray(det_rows)), "bbox")
        run.params.imgIds = list(range(1, num_images + 1))
        run.params.maxDets = [1, 10, int(max_detections)]
        run.evaluate()
        run.accumulate()
        run.summarize()
    return np.asarray(run.stats[:len(COCO_KEYS)], np.float64)


class COCOMeanAP(Inferencer):
    """COCO box mAP (pycocotools' numbers) over the whole validation set.

    Each example is one image. Detections come as padded arrays ``boxes``
    ``[B, D, 4]``, ``scores`` ``[B, D]``, ``classes`` ``[B, D]``; ground
    truth as ``gt_boxes`` ``[B, G, 4]`` and ``gt_classes`` ``[B, G]``. Rows
    whose class is negative (KerasCV's and keras-hub's padding, ``-1``), or
    beyond ``num_detections`` / ``num_gt`` when those are fetched, are
    padding. Images are numbered in dataset order; every image counts, with
    or without boxes.

    Reports ``<prefix>_AP`` (AP at IoU .50:.95), ``_AP50``, ``_AP75``,
    ``_APs``/``_APm``/``_APl`` (by area), ``_AR1``, ``_AR10``, ``_AR100``
    (recall at that many detections per image) and ``_ARs``/``_ARm``/``_ARl``:
    ``COCOeval(...).stats`` in order. As in pycocotools, ``-1`` means
    undefined (no ground truth in an area range, no detections at all).

    Args:
        boxes: the detected boxes' fetch name (``[B, D, 4]``).
        scores: the detections' scores (``[B, D]``).
        classes: the detections' classes (``[B, D]``, negative: padding).
        gt_boxes: the ground-truth boxes' fetch name (``[B, G, 4]``).
        gt_classes: the ground-truth classes (``[B, G]``, negative: padding).
        num_detections: optional fetch name of ``[B]`` detection counts.
        num_gt: optional fetch name of ``[B]`` ground-truth counts.
        box_format: ``'xyxy'`` (default), ``'yxyx'``, ``'xywh'`` (COCO's) or
            ``'cxcywh'``, for detections and ground truth alike, in pixels.
        backend: ``'auto'`` (faster-coco-eval if installed), ``'pycocotools'``
            or ``'faster_coco_eval'``.
        max_detections: COCO's largest ``maxDets`` (100).
        prefix: keys are ``<prefix>_AP`` ...
        max_memory_mb: rows held in memory before spilling to disk.
        tmpdir: where the spill directory goes.
    """

    def __init__(self, boxes: str = "boxes", scores: str = "scores", classes: str = "classes",
                 gt_boxes: str = "gt_boxes", gt_classes: str = "gt_classes", *,
                 num_detections: str | None = None, num_gt: str | None = None, box_format: str = "xyxy",
                 backend: str = "auto", max_detections: int = 100, prefix: str = "validation",
                 max_memory_mb: float = 256, tmpdir: str | os.PathLike | None = None):
        if box_format not in _FORMATS:
            raise ValueError(f"`box_format` must be one of {_FORMATS!r}. Received: box_format={box_format!r}")
        if backend not in _BACKENDS:
            raise ValueError(f"`backend` must be one of {_BACKENDS!r}. Received: backend={backend!r}")
        if backend != "auto":
            require(backend, "coco", "COCOMeanAP")
        else:
            try:
                require("faster_coco_eval", "coco", "COCOMeanAP")
            except ImportError:
                require("pycocotools", "coco", "COCOMeanAP")
        if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 10:
            raise ValueError(f"`max_detections` must be an int >= 10. Received: max_detections={max_detections!r}")
        if not isinstance(max_memory_mb, (int, float)) or not math.isfinite(max_memory_mb) or max_memory_mb <= 0:
            raise ValueError(f"`max_memory_mb` must be a positive number. Received: max_memory_mb={max_memory_mb!r}")
        self.names = {"boxes": boxes, "scores": scores, "classes": classes, "gt_boxes": gt_boxes,
                      "gt_classes": gt_classes, "num_detections": num_detections, "num_gt": num_gt}
        self.box_format, self.backend, self.max_detections = box_format, backend, max_detections
        self.prefix, self.max_memory_mb = prefix, max_memory_mb
        self.tmpdir = None if tmpdir is None else os.fspath(tmpdir)
        self._spill = None

    _RUN_STATE = {**Inferencer._RUN_STATE, "_spill": lambda: None, "_dets": lambda: None, "_gts": lambda: None}

    def _fields(self) -> list[str]:
        return [k for k, v in self.names.items() if v is not None]

    def _get_fetches(self) -> list[str]:
        return [self.names[k] for k in self._fields()]

    def result_names(self) -> list[str]:
        return [self.key(k) for k in COCO_KEYS]

    def key(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name

    def _before_inference(self) -> None:
        if self._spill is not None:
            self._spill.close()
        self._spill = SpillDir(self.tmpdir, prefix="infer_callbacks_coco_")
        budget = int(self.max_memory_mb * 2**20) // 2
        self._dets = RowStore(7, max_memory_bytes=budget, spill=self._spill)
        self._gts = RowStore(6, max_memory_bytes=budget, spill=self._spill)
        self.num_images = 0

    def _rows(self, boxes, classes, count, extra=None) -> np.ndarray:
        boxes, classes = np.asarray(boxes), np.asarray(classes)
        if boxes.ndim != 3 or boxes.shape[-1] != 4 or classes.shape != boxes.shape[:2]:
            raise ValueError(f"COCOMeanAP needs boxes [B, N, 4] with classes [B, N]; received boxes "
                             f"{boxes.shape} and classes {classes.shape}.")
        keep = classes >= 0
        if count is not None:
            keep &= np.arange(boxes.shape[1]) < np.asarray(count).reshape(-1, 1)
        image, slot = np.nonzero(keep)
        columns = [(self.num_images + 1 + image)[:, None], to_xywh(boxes[image, slot], self.box_format)]
        if extra is not None:
            columns.append(np.asarray(extra, np.float64)[image, slot][:, None])
        columns.append(classes[image, slot][:, None])
        return np.concatenate([np.asarray(c, np.float64) for c in columns], axis=1)

    def _on_fetches(self, results) -> None:
        got = dict(zip(self._fields(), results))
        n = len(np.asarray(got["boxes"]))
        if len(np.asarray(got["gt_boxes"])) != n:
            raise ValueError(f"COCOMeanAP: {n} images of detections but {len(got['gt_boxes'])} of ground "
                             "truth in one batch; both need one row per image.")
        scores = np.asarray(got["scores"])
        if scores.shape != np.shape(got["classes"]):
            raise ValueError(f"COCOMeanAP: scores {scores.shape} and classes {np.shape(got['classes'])} "
                             "must have the same shape [B, D].")
        self._dets.append(self._rows(got["boxes"], got["classes"], got.get("num_detections"), scores))
        self._gts.append(self._rows(got["gt_boxes"], got["gt_classes"], got.get("num_gt")))
        self.num_images += n

    def _after_inference(self) -> dict[str, Any]:
        try:
            stats = evaluate(self._gts.rows(), self._dets.rows(), self.num_images, backend=self.backend,
                             max_detections=self.max_detections)
        finally:
            self._spill.close()
        return {self.key(k): float(v) for k, v in zip(COCO_KEYS, stats)}

    def __repr__(self) -> str:
        return f"COCOMeanAP(boxes={self.names['boxes']!r}, gt_boxes={self.names['gt_boxes']!r})"
