"""ScalarPrinter with several named validation sets: one column per set,
the unnamed (combined and training) values in the first, each number the
one History recorded."""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf

from helpers.models import classifier
from infer_callbacks import InferenceRunner, Monitors, ScalarPrinter, ScalarStats, ClassificationError


def test_one_column_per_set():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    sets = {"clean": tf.data.Dataset.from_tensor_slices((x[60:], y[60:])).batch(8),
            "noisy": tf.data.Dataset.from_tensor_slices((x[60:] + 1, y[60:])).batch(8)}
    model = classifier(2, seed=None)
    out = io.StringIO()
    history = model.fit(x[:60], y[:60], epochs=1, verbose=0, callbacks=[
        Monitors([ScalarPrinter(file=out)]),
        InferenceRunner(sets, [ScalarStats("loss"), ClassificationError()], combine="mean", verbose=False)])
    lines = out.getvalue().splitlines()
    assert lines[0].split()[-3:] == ["value", "clean", "noisy"], lines
    h = {k: v[-1] for k, v in history.history.items()}
    row = next(line.split() for line in lines if line.startswith("validation_loss"))
    assert [float(v) for v in row[1:]] == [float(f"{h[k]:.6g}") for k in (
        "validation_loss", "validation_clean_loss", "validation_noisy_loss")]
    assert next(line.split() for line in lines if line.startswith("loss "))[1:] == [f"{h['loss']:.6g}"]
