"""The savers' Keras-format files (``keras_format``) and the either-format
helpers (``any_format``), on both backends: what a file holds, the list
``max_to_keep`` keeps, and a failed write that leaves nothing behind."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from infer_callbacks.checkpoints import any_format, keras_format


def _model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(0.1), "mse")
    model.fit(np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"), epochs=1, verbose=0)
    return model


def test_a_snapshot_is_written_without_touching_the_models_weights(tmp_path):
    model = _model()
    own = [np.array(w) for w in model.get_weights()]
    snapshot = [w + 1.0 for w in own]
    path = keras_format.write(model, str(tmp_path / "s.weights.h5"), weights=snapshot, with_optimizer=False,
                              epoch=3, global_step=7)
    for w, o in zip(model.get_weights(), own):
        np.testing.assert_array_equal(w, o)
    info = keras_format.read_info(path)
    assert (info.epoch, info.global_step) == (3, 7)
    other = _model()
    other.load_weights(path)
    for w, s in zip(other.get_weights(), snapshot):
        np.testing.assert_allclose(w, s)


def test_max_to_keep_lists_the_newest_and_deletes_the_rest(tmp_path):
    model = _model()
    for step in (1, 2, 3, 4):
        keras_format.save_managed(model, str(tmp_path), epoch=step, global_step=step, max_to_keep=2)
    listed = any_format.list_checkpoints(tmp_path)
    assert [(i.epoch, i.global_step) for i in listed] == [(3, 3), (4, 4)]
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(keras_format.SUFFIX)) == [
        "ckpt-3.weights.h5", "ckpt-4.weights.h5"]
    any_format.remove(str(tmp_path / "ckpt-3.weights.h5"))
    assert not (tmp_path / "ckpt-3.weights.h5").exists()


def test_a_failed_write_leaves_no_file_and_the_list_unchanged(tmp_path, monkeypatch):
    model = _model()
    keras_format.save_managed(model, str(tmp_path), epoch=1, global_step=1, max_to_keep=5)
    before = sorted(os.listdir(tmp_path))

    def broken(path, overwrite=True):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save_weights", broken)
    with pytest.raises(OSError, match="disk full"):
        keras_format.save_managed(model, str(tmp_path), epoch=2, global_step=2, max_to_keep=5)
    assert sorted(os.listdir(tmp_path)) == before  # no half file, no hidden temporary
    assert [i.global_step for i in any_format.list_checkpoints(tmp_path)] == [1]


def test_a_name_without_the_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        keras_format.write(_model(), str(tmp_path / "x.h5"), epoch=1, global_step=1)
