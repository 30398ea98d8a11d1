"""Per-batch cost of KerasMetric: ``update_state`` in a ``tf.function``
(the default, ``compiled=True``) against eager (``compiled=False``), for AUC,
MeanIoU and top-k accuracy on batches of 64 examples with 10 classes.

    python benchmarks/bench_keras_metric.py [--batches 300] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infer_callbacks import KerasMetric  # noqa: E402

METRICS = {
    "AUC": (lambda: keras.metrics.AUC(from_logits=True), "onehot"),
    "MeanIoU": (lambda: keras.metrics.MeanIoU(num_classes=10, sparse_y_pred=False), "sparse"),
    "SparseTopKCategoricalAccuracy": (lambda: keras.metrics.SparseTopKCategoricalAccuracy(k=3), "sparse"),
}


def per_batch_ms(make, labels, compiled, batches, rng):
    inf = KerasMetric(make(), ["label", "output"], compiled=compiled)
    data = []
    for _ in range(batches):
        y = rng.integers(0, 10, size=64)
        data.append([np.eye(10, dtype=np.float32)[y] if labels == "onehot" else y.astype(np.int32),
                     rng.normal(size=(64, 10)).astype(np.float32)])
    inf.before_inference()
    for batch in data[:3]:  # warm up: the trace happens from the second batch
        inf.on_fetches(batch, 64)
    t0 = time.perf_counter()
    for batch in data[3:]:
        inf.on_fetches(batch, 64)
    seconds = time.perf_counter() - t0
    inf.after_inference()
    return seconds / (batches - 3) * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 warm-up and 3 timed batches, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.rounds = 6, 1
    if args.batches < 4:
        parser.error(f"--batches must be at least 4 (3 warm up, the rest are timed). Received: --batches {args.batches}")
    rng = np.random.default_rng(0)
    result = {}
    for name, (make, labels) in METRICS.items():
        result[name] = {mode: statistics.median(per_batch_ms(make, labels, mode == "compiled", args.batches, rng)
                                                for _ in range(args.rounds))
                        for mode in ("compiled", "eager")}
    if args.json:
        print(json.dumps(result))
    else:
        for name, r in result.items():
            print(f"{name}: {r['compiled']:.2f} ms per batch compiled, {r['eager']:.2f} ms eager")
    return result


if __name__ == "__main__":
    main()
