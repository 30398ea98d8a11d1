"""The monitors tests' model, data and readers (TensorBoard events, ``stats.json``)."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import tensorflow as tf

from helpers.models import classifier


def classifier_and_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = rng.integers(0, 3, size=96).astype("int32")
    model = classifier(seed=seed)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    return model, ds


def read_events(logdir):
    """{tag: [(step, value or image bytes)]} from every event file in logdir."""
    values = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                array = tf.make_ndarray(v.tensor)
                value = float(array) if array.shape == () else array
                values.setdefault(v.tag, []).append((event.step, value))
    return values


def read_scalars(logdir):
    return {k: v for k, v in read_events(logdir).items() if not isinstance(v[0][1], np.ndarray)}


def read_stats(logdir, name="stats.json"):
    with open(os.path.join(logdir, name)) as f:
        return json.load(f)
