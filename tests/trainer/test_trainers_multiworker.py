"""DistributedTrainer with two worker processes on 127.0.0.1 (TF_CONFIG, free
ports picked at runtime, hard timeouts): every worker reports the same
validation numbers, equal to numpy over the whole validation set, the
weights equal a single-process numpy SGD (for a ModelDesc and for a compiled
Keras model), only the chief writes files, and a dead worker fails the other
instead of hanging."""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest

from helpers.multiworker import start_workers  # noqa: F401

pytestmark = pytest.mark.tensorflow_only("the ModelDesc trainer host needs TensorFlow")


def _softmax_ce(w, b, x, y):
    logits = x @ w + b
    logits = logits - logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y], logits


def _numpy_sgd(w, b, x, y, batch, epochs, lr):
    for _ in range(epochs):
        for s in range(0, len(x), batch):
            xb, yb = x[s:s + batch], y[s:s + batch]
            _, logits = _softmax_ce(w, b, xb, yb)
            p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1
            w, b = w - lr * xb.T @ p / len(yb), b - lr * p.mean(0)
    return w, b


def test_two_workers_agree_with_numpy(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16).astype(np.float32)
    y = digits.target.astype(np.int32)
    rng = np.random.default_rng(0)
    w0 = (rng.normal(size=(64, 10)) * 0.05).astype(np.float32)
    xt, yt, xv, yv = x[:400], y[:400], x[1500:], y[1500:]  # 400 = 12 full batches + 16; 297 = 5x50 + 47
    data = tmp_path / "data.npz"
    np.savez(data, xt=xt, yt=yt, xv=xv, yv=yv, w0=w0)
    logdir = tmp_path / "log"  # the same directory for both workers: only the chief may write

    results = start_workers(2, [str(data), str(logdir), "live", "60"], timeout=170)
    reports = []
    for i, (code, out, err) in enumerate(results):
        assert code == 0, f"worker {i} failed:\n{err[-3000:]}"
        line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        assert line, f"worker {i} printed no result:\n{out[-2000:]}\n{err[-2000:]}"
        reports.append(json.loads(line[-1][len("RESULT "):]))
        assert "validation_cost" in out  # every worker prints its table

    # Every worker: identical numbers, every validation sample exactly once,
    # and a per-batch inferencer sees the dataset's whole batches in order
    # (batch k*2+i ran on worker i), as on one device.
    assert reports[0]["history"] == reports[1]["history"]
    for r in reports:
        assert r["samples"] == len(xv)
        assert [row[:-1] for row in r["seen"]] == [yv[s:s + 50].tolist() for s in range(0, len(yv), 50)]
        np.testing.assert_allclose([row[-1] for row in r["seen"]],
                                   [xv[s:s + 50].sum() for s in range(0, len(xv), 50)], rtol=1e-5)
    # Weights equal single-process numpy SGD on the same global batches.
    w, b = _numpy_sgd(w0.astype(np.float64), np.zeros(10), xt, yt, 32, 2, 0.5)
    np.testing.assert_allclose(reports[0]["kernel"], w, atol=2e-5)
    np.testing.assert_allclose(reports[1]["kernel"], reports[0]["kernel"], rtol=0, atol=0)
    # Validation numbers equal numpy over the whole set with the final weights.
    kernel, bias = np.array(reports[0]["kernel"]), np.array(reports[0]["bias"])
    ce, logits = _softmax_ce(kernel, bias, xv.astype(np.float64), yv)
    hist = reports[0]["history"]
    np.testing.assert_allclose(hist["validation_cost"][-1], ce.mean(), rtol=1e-5)
    assert hist["validation_error"][-1] == pytest.approx(np.mean(logits.argmax(1) != yv), abs=1e-12)

    # A compiled Keras model under the same strategy: the same steps and numbers.
    assert reports[0]["keras_history"] == reports[1]["keras_history"]
    assert reports[0]["keras_samples"] == len(xv)
    np.testing.assert_allclose(reports[0]["keras_kernel"], w, atol=2e-5)
    np.testing.assert_allclose(reports[0]["keras_history"]["validation_loss"], hist["validation_cost"], rtol=1e-5)

    # Only the chief wrote: one stats.json with the two epochs, its checkpoints, no leftovers.
    stats = json.loads((logdir / "stats.json").read_text())
    assert [s["epoch_num"] for s in stats] == [1, 2]
    assert stats[-1]["validation_cost"] == pytest.approx(hist["validation_cost"][-1])
    names = sorted(os.listdir(logdir))
    assert "checkpoint" in names and "ckpt-26.index" in names and "min-validation_cost.json" in names  # ckpt-<global step>
    assert not [n for n in names if n.startswith(".")], names


def test_a_dead_worker_fails_the_others_instead_of_hanging(tmp_path):
    data = tmp_path / "data.npz"
    from helpers.trainer import W0, XT, XV, YT, YV

    np.savez(data, xt=XT, yt=YT, xv=XV, yv=YV, w0=W0)
    (code0, _, err0), (code1, _, _) = start_workers(
        2, [str(data), str(tmp_path / "log"), "die", "20"], timeout=300)
    assert code1 == 3  # worker 1 left during epoch 2
    assert code0 != 0 and "another worker is unreachable" in err0, err0[-3000:]


def test_cross_worker_step_on_three_replicas_with_partial_rounds(tmp_path):
    """The multi-worker path of the validation step (every value gathered
    with fixed-shape collectives, several chunks per value, validity agreed
    by all replicas) on a 3-device MirroredStrategy, where collectives run
    as between workers: 15 batches of 7 (the last of 2) in whole-batch
    rounds of 3, limits that cut rounds across calls; every batch comes back
    once, in order, with its own shape."""
    from conftest import run_python

    code = """
        import numpy as np, tensorflow as tf
        import infer_callbacks.distribute.cross_worker as C
        import infer_callbacks.runner.engine.tensorflow.step as S
        from infer_callbacks.runner.engine.tensorflow.chunk import Chunk
        C._CHUNK = 4                             # several chunks per value
        st = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1", "/cpu:2"])
        x = np.arange(100 * 3, dtype=np.float32).reshape(100, 3)
        ds = tf.data.Dataset.from_tensor_slices((x, x[:, 0] > 150)).batch(7)
        specs = {"a": tf.TensorSpec([None, 3], tf.float32), "b": tf.TensorSpec([None], tf.bool),
                 S.NUM_SAMPLES: tf.TensorSpec([1], tf.int64)}
        fn = lambda batch: {"a": batch[0] * 2, "b": batch[1],
                            S.NUM_SAMPLES: tf.reshape(tf.shape(batch[0], out_type=tf.int64)[0], [1])}
        step = S.make_step(fn, specs, ds.element_spec, st, "whole", max_rounds=3, multi_worker=True)
        ranks = {"a": 2, "b": 1, S.NUM_SAMPLES: 0}
        for limit in (1, 2, 3):
            it, got = iter(ds), []
            while True:
                rounds, valid, values, sizes, shapes = step(it, tf.constant(limit))
                chunk = Chunk(valid.numpy(), {k: v.numpy() for k, v in values.items()}, sizes.numpy(),
                                {k: v.numpy() for k, v in shapes.items()}, specs, ranks, 3, merge=False)
                got += list(chunk.batches())
                if int(rounds) < limit:
                    break
            assert len(got) == 15, len(got)
            np.testing.assert_array_equal(np.concatenate([g["a"] for g in got]), x * 2)
            np.testing.assert_array_equal(np.concatenate([g["b"] for g in got]), x[:, 0] > 150)
            assert [int(g[S.NUM_SAMPLES]) for g in got] == [7] * 14 + [2]
        print("OK")
    """
    proc = run_python(textwrap.dedent(code), devices=3, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
