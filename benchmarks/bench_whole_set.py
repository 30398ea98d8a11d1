"""Whole-set metrics against their reference libraries, in the same process.

Workloads (synthetic data, fixed seeds):

* ``auc``: ``AUC()`` over 1,000,000 float32 scores (30% positives), fed in
  batches of 4,096 as the runner feeds it, against
  ``sklearn.metrics.roc_auc_score`` on the same arrays; and the peak memory
  the inferencer allocates beyond the scores (``tracemalloc``, which numpy
  reports to).
* ``bleu``: ``CorpusBLEU(chrf=False)`` over 10,000 generated sentences in
  batches of 64 against ``sacrebleu.corpus_bleu`` alone on the same lists.
* ``coco``: ``COCOMeanAP``'s scoring of 1,000 images by pycocotools and by
  faster-coco-eval (the same 12 numbers, checked).
* ``generate``: the wall time of ``fit`` with a generating validation
  (``generate=`` a greedy decode of a small Keras model, ``CorpusBLEU``),
  synchronous and ``asynchronous=True``, against ``fit`` without validation,
  on an input-bound training (a ``PyDataset`` taking 20 ms per batch, 40
  batches an epoch, 6 epochs; 960 validation examples in batches of 32,
  one pass about half an epoch).
  The asynchronous runner validates the last epoch in the foreground (so
  that ``History``'s last row has it): that one pass is not hidden.

Rounds are interleaved (every variant once per round, alternating order);
the table reports the fastest and the median time, and ratios of the
fastest times and medians of per-round ratios.

    python benchmarks/bench_whole_set.py [--rounds 5] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infer_callbacks import AUC, COCOMeanAP, CorpusBLEU  # noqa: E402
from infer_callbacks.inferencers.whole_set.coco import evaluate  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def interleave(variants: dict, rounds: int) -> dict:
    times = {name: [] for name in variants}
    values = {}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for name in order:
            seconds, values[name] = timed(variants[name])
            times[name].append(seconds)
    return {"times": times, "values": values}


def summary(times: dict, ours: str, base: str) -> dict:
    ratios = [a / b for a, b in zip(times[ours], times[base])]
    return {"fastest": {k: min(v) for k, v in times.items()},
            "median": {k: statistics.median(v) for k, v in times.items()},
            "ratio_fastest": min(times[ours]) / min(times[base]), "ratio_median": statistics.median(ratios)}


def feed(inf, arrays, batch):
    inf.before_inference()
    n = len(arrays[0])
    for i in range(0, n, batch):
        inf.on_fetches([a[i:i + batch] for a in arrays], min(batch, n - i))
    return inf.after_inference()


def bench_auc(n: int, rounds: int) -> dict:
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(0)
    score = rng.normal(size=n).astype(np.float32)
    label = (rng.random(n) < 0.3).astype(np.int64)
    out = interleave({"AUC": lambda: feed(AUC(), [label, score], 4096)["validation_auc"],
                      "sklearn": lambda: roc_auc_score(label, score)}, rounds)
    assert abs(out["values"]["AUC"] - out["values"]["sklearn"]) < 1e-9, out["values"]
    tracemalloc.start()
    feed(AUC(), [label, score], 4096)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {**summary(out["times"], "AUC", "sklearn"), "n": n, "peak_mb_beyond_scores": peak / 2**20}


def sentences(rng, n):
    words = np.array("the a cat dog sat on mat ran fast slow red blue house tree and of to in".split())
    refs, hyps = [], []
    for _ in range(n):
        ref = rng.choice(words, rng.integers(5, 25))
        hyp = np.where(rng.random(len(ref)) < 0.25, rng.choice(words, len(ref)), ref)
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return hyps, refs


def bench_bleu(n: int, rounds: int) -> dict:
    import sacrebleu
    hyps, refs = sentences(np.random.default_rng(0), n)
    out = interleave({"CorpusBLEU": lambda: feed(CorpusBLEU(chrf=False), [hyps, refs], 64)["validation_bleu"],
                      "sacrebleu": lambda: sacrebleu.corpus_bleu(hyps, [refs]).score}, rounds)
    assert abs(out["values"]["CorpusBLEU"] - out["values"]["sacrebleu"]) < 1e-9, out["values"]
    return {**summary(out["times"], "CorpusBLEU", "sacrebleu"), "n": n}


def bench_coco(images: int, rounds: int) -> dict:
    rng = np.random.default_rng(0)
    inf = COCOMeanAP(max_memory_mb=512)
    inf.before_inference()
    for _ in range(0, images, 50):
        gt = rng.uniform(0, 300, (50, 6, 2))
        gt_boxes = np.concatenate([gt, gt + rng.uniform(8, 120, (50, 6, 2))], -1)
        gt_classes = rng.integers(-1, 8, (50, 6))
        boxes = np.repeat(gt_boxes, 5, axis=1) + rng.normal(0, 8, (50, 30, 4))
        classes = np.where(rng.random((50, 30)) < 0.8, np.repeat(gt_classes, 5, axis=1), rng.integers(0, 8, (50, 30)))
        inf.on_fetches([boxes, rng.random((50, 30)), classes, gt_boxes, gt_classes], 50)
    gts, dets = np.array(inf._gts.rows()), np.array(inf._dets.rows())
    out = interleave({b: (lambda b=b: evaluate(gts, dets, inf.num_images, backend=b))
                      for b in ("faster_coco_eval", "pycocotools")}, rounds)
    same = np.allclose(out["values"]["faster_coco_eval"], out["values"]["pycocotools"], rtol=0, atol=1e-12)
    return {**summary(out["times"], "faster_coco_eval", "pycocotools"), "images": images, "detections": len(dets),
            "same_numbers": bool(same)}


def bench_generate(epochs: int, steps: int, rounds: int, examples: int) -> dict:
    import keras
    from infer_callbacks import InferenceRunner

    vocab = np.array(["<pad>"] + [f"w{i}" for i in range(31)])

    class SlowInput(keras.utils.PyDataset):
        def __init__(self, x, y):
            super().__init__()
            self.x, self.y = x, y

        def __len__(self):
            return steps

        def __getitem__(self, i):
            time.sleep(0.02)  # input-bound: 20 ms a batch
            return self.x[i * 32:(i + 1) * 32], self.y[i * 32:(i + 1) * 32]

    def greedy(model, tokens):  # Keras's compiled predict step, then the argmax on the host
        ids = np.argmax(model.predict_on_batch(tokens), -1)
        return [" ".join(vocab[t] for t in row if t) for row in ids]

    rng = np.random.default_rng(0)
    x = rng.integers(1, 32, (32 * steps, 12)).astype("int32")
    xv = rng.integers(1, 32, (examples, 12)).astype("int32")
    refs = np.array([" ".join(vocab[t] for t in row) for row in xv])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,), dtype="int32"), keras.layers.Embedding(32, 64),
                              keras.layers.Dense(256, activation="relu"), keras.layers.Dense(32)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    initial = model.get_weights()
    import tensorflow as tf
    val = tf.data.Dataset.from_tensor_slices((xv, refs)).batch(32)
    runners = {mode: InferenceRunner(val, CorpusBLEU(chrf=False), generate=lambda m, t: greedy(m, t),
                                     asynchronous=mode == "async", verbose=False) for mode in ("sync", "async")}
    data = SlowInput(x, x)
    model.fit(data, epochs=1, verbose=0)  # compile the train step once

    def fit(mode):
        model.set_weights(initial)
        callbacks = [] if mode == "none" else [runners[mode]]
        return model.fit(data, epochs=epochs, verbose=0, callbacks=callbacks).history

    out = interleave({mode: (lambda mode=mode: fit(mode)) for mode in ("none", "sync", "async")}, rounds)
    validation = interleave({"one pass": lambda: runners["sync"].trigger()}, 1)["times"]["one pass"][0]
    result = {"epochs": epochs, "steps": steps, "one_validation_pass_s": validation,
              "fastest": {k: min(v) for k, v in out["times"].items()},
              "median": {k: statistics.median(v) for k, v in out["times"].items()}}
    for mode in ("sync", "async"):
        result[f"{mode}_ratio_fastest"] = min(out["times"][mode]) / min(out["times"]["none"])
        result[f"{mode}_ratio_median"] = statistics.median(
            [a / b for a, b in zip(out["times"][mode], out["times"]["none"])])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true", help="one small round (a smoke test)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    results = {
        "auc": bench_auc(20_000 if args.quick else 1_000_000, rounds),
        "bleu": bench_bleu(300 if args.quick else 10_000, rounds),
        "coco": bench_coco(50 if args.quick else 1000, rounds),
        "generate": bench_generate(2 if args.quick else 6, 3 if args.quick else 40, 1 if args.quick else 3,
                                   32 if args.quick else 960),
    }
    if args.json:
        print(json.dumps(results))
        return
    a, b, c, g = results["auc"], results["bleu"], results["coco"], results["generate"]
    rows = [
        ("AUC vs roc_auc_score", a["n"], a["fastest"]["AUC"], a["fastest"]["sklearn"], a["ratio_fastest"],
         a["ratio_median"], f"peak {a['peak_mb_beyond_scores']:.1f} MB beyond the scores"),
        ("CorpusBLEU vs corpus_bleu", b["n"], b["fastest"]["CorpusBLEU"], b["fastest"]["sacrebleu"],
         b["ratio_fastest"], b["ratio_median"], ""),
        ("faster-coco-eval vs pycocotools", c["images"], c["fastest"]["faster_coco_eval"],
         c["fastest"]["pycocotools"], c["ratio_fastest"], c["ratio_median"], f"same numbers: {c['same_numbers']}"),
    ]
    print(f"{'workload':34} {'size':>9} {'ours s':>8} {'base s':>8} {'ratio':>6} {'median':>6}  note")
    for name, size, ours, base, ratio, median, note in rows:
        print(f"{name:34} {size:>9} {ours:8.3f} {base:8.3f} {ratio:6.2f} {median:6.2f}  {note}")
    print(f"\nfit, {g['epochs']} epochs x {g['steps']} input-bound steps (one validation pass "
          f"{g['one_validation_pass_s']:.2f} s): no validation {g['fastest']['none']:.2f} s, "
          f"generating sync {g['fastest']['sync']:.2f} s ({g['sync_ratio_fastest']:.2f}x), "
          f"async {g['fastest']['async']:.2f} s ({g['async_ratio_fastest']:.2f}x; median of rounds "
          f"{g['async_ratio_median']:.2f}x)")


if __name__ == "__main__":
    main()
