"""Two worker processes on 127.0.0.1 train the tensorpack-style digits model
with DistributedTrainer (MultiWorkerMirroredStrategy) and validate it in the
loop; both print their validation table, with the same numbers.

    python examples/two_workers.py [--epochs 10] [--logdir train_log/two_workers]

This is ``tensorpack_style_digits.py --workers 2``: each worker gets its own
``TF_CONFIG`` and a free loopback port; only worker 0 writes the log
directory and the checkpoints.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tensorpack_style_digits import main  # noqa: E402

if __name__ == "__main__":
    main(["--workers", "2", "--logdir", os.path.join("train_log", "two_workers"), *sys.argv[1:]])
