"""cross_worker: each worker's share of the batches. The fixed-shape
collectives are exercised on a 3-device strategy in test_trainers_multiworker.py
(several chunks per value) and across two worker processes there."""

from __future__ import annotations

import tensorflow as tf

from infer_callbacks.distribute.cross_worker import shard_for_worker
import pytest

pytestmark = pytest.mark.tensorflow_only("tf.distribute")


def test_shard_for_worker_takes_its_replicas_batches_of_every_round():
    ds = tf.data.Dataset.range(10)
    # 2 workers x 2 local replicas: rounds of 4 batches
    assert list(shard_for_worker(ds, 4, 2, 0).as_numpy_iterator()) == [0, 1, 4, 5, 8, 9]
    assert list(shard_for_worker(ds, 4, 2, 1).as_numpy_iterator()) == [2, 3, 6, 7]
