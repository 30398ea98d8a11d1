"""Warnings raised inside fit point at the user's line (the script that
called fit), not at Keras's source; stats.json's new-run warning counts
epochs, not rows."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest

from infer_callbacks import JSONWriter, MinSaver, Monitors
from infer_callbacks._util.warn import warn_user


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


X, Y = np.zeros((8, 3), "float32"), np.zeros((8, 1), "float32")


def test_a_savers_warning_inside_fit_names_the_callers_line(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _model().fit(X, Y, epochs=1, verbose=0, callbacks=[MinSaver("nope", checkpoint_dir=tmp_path)])  # here
    (w,) = [w for w in caught if "'nope' is not in the logs" in str(w.message)]
    assert w.filename == __file__
    assert "# here" in open(__file__).read().splitlines()[w.lineno - 1]


def test_warn_user_from_the_callers_frame():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_user("x")
    assert caught[0].filename == __file__ and caught[0].category is RuntimeWarning


def test_stats_json_counts_epochs_not_rows(tmp_path):
    (tmp_path / "stats.json").write_text(json.dumps(
        [{"epoch_num": e, "global_step": s} for e in (1, 2) for s in (e * 10 - 5, e * 10)]))
    with pytest.warns(RuntimeWarning, match=r"held 2 epochs \(4 rows\) of another run") as record:
        _model().fit(X, Y, epochs=1, verbose=0, callbacks=[Monitors([JSONWriter(tmp_path)])])
    assert any(w.filename == __file__ for w in record)
