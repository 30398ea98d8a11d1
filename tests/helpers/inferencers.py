"""Driving an inferencer as the runner does, and the numpy references the
inferencer tests share (torchmetrics' MetricTester idea: whatever the batch
split, the numbers of one pass over everything)."""

from __future__ import annotations

import numpy as np

from infer_callbacks.inferencers.context import RunContext


def run_inferencer(inf, arrays, sizes, *, exact=None, sample_weight=None, ctx=None):
    """One validation run of ``inf`` as the runner drives it.

    ``arrays``: fetch name -> per-example array; ``sizes``: batch sizes (0 is
    an empty replica slice); ``exact``: name -> ``(num, den)`` per-example
    arrays; ``sample_weight``: ``[N]``. Returns ``(logs, monitor_only, images)``.
    """
    names = inf.get_fetches()
    ctx = ctx or RunContext(epoch_num=1, global_step=10)
    inf.setup_run(ctx)
    inf.set_run_context(ctx)
    inf.before_inference()
    start = 0
    for size in sizes:
        part = slice(start, start + size)
        extras = None if exact is None else [
            (exact[k][0][part], exact[k][1][part]) if k in exact else None for k in names]
        inf.on_fetches([arrays[k][part] for k in names], size, exact=extras,
                       sample_weight=None if sample_weight is None else sample_weight[part])
        start += size
    assert start == len(next(iter(arrays.values()))), "batch sizes must cover the set"
    logs = inf.after_inference()
    return logs, inf.monitor_only_results(), inf.after_inference_images()


def check_split_invariance(make, arrays, expected, sizes, *, expected_monitor=None, exact=None,
                           sample_weight=None, rtol=1e-9):
    """A fresh inferencer fed ``sizes`` and one fed the whole set in one batch
    both report ``expected`` (numpy over the whole set), and agree."""
    n = len(next(iter(arrays.values())))
    outs = [run_inferencer(make(), arrays, s, exact=exact, sample_weight=sample_weight)
            for s in (sizes, [n])]
    for logs, monitor, _ in outs:
        assert set(logs) == set(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(logs[key], value, rtol=rtol, atol=1e-12, err_msg=key)
        for key, value in (expected_monitor or {}).items():
            np.testing.assert_allclose(monitor[key], value, rtol=rtol, atol=1e-12, err_msg=key)
    np.testing.assert_allclose([outs[0][0][k] for k in expected], [outs[1][0][k] for k in expected],
                               rtol=rtol)
    return outs[0][0]


def feed(inf, arrays, sizes, **kwargs):
    """One validation run of ``inf``: ``(logs, images)``."""
    logs, _, images = run_inferencer(inf, arrays, sizes, **kwargs)
    return logs, images


def reference_confusion(label, pred, k):
    """The ``k x k`` confusion matrix (rows: labels, columns: predictions)."""
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (label, pred), 1)
    return cm


def numpy_mean_iou(label, pred, k):
    """Keras's ``MeanIoU`` over classes that occur, from the confusion matrix."""
    cm = reference_confusion(label.ravel(), pred.ravel(), k)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1) - tp
    return float(np.mean(tp[denom > 0] / denom[denom > 0]))
