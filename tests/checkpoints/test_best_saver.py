"""MinSaver / MaxSaver with keep_best=k under Keras's fit: the listing in
``<mode>-<stat>.json`` and the files on disk after noisy validation, a tie, a
resume and a new run in the same directory; every kept checkpoint restores.
Both backends (TensorFlow checkpoints / Keras ``.weights.h5`` files)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from infer_callbacks import InferenceRunner, MaxSaver, MinSaver, ScalarStats
from infer_callbacks.checkpoints import any_format as checkpoint
from helpers.savers import Scripted, fit, resumable, stems
from helpers.trainer import train_ds

NOISY = [0.9, 0.5, 0.7, 0.4, 0.8, 0.45, 0.6]  # epochs 1..7


def state(tmp_path, name="min-score"):
    return json.loads((tmp_path / f"{name}.json").read_text())


def kept_path(directory, epoch, name="min-score"):
    """The path of the kept checkpoint of ``epoch`` (either format)."""
    (entry,) = [e for e in state(directory, name)["kept"] if e["epoch"] == epoch]
    return str(directory / entry["checkpoint"])


def test_keep_best_lists_and_keeps_the_k_best(tmp_path):
    scripted = Scripted(NOISY)
    saver = MinSaver("score", checkpoint_dir=tmp_path, keep_best=3)
    net = fit([saver, scripted], len(NOISY))
    s = state(tmp_path)
    # Today's fields for the best, then every kept one, best first.
    assert (s["best"], s["epoch"], s["global_step"]) == (0.4, 4, 4 * 13)
    assert s["checkpoint"] == s["kept"][0]["checkpoint"] and s["checkpoint"].startswith("min-score-4")
    assert [(e["value"], e["epoch"]) for e in s["kept"]] == [(0.4, 4), (0.45, 6), (0.5, 2)]
    assert [e["global_step"] for e in s["kept"]] == [4 * 13, 6 * 13, 2 * 13]
    assert saver.kept == s["kept"] and (saver.best, saver.best_epoch) == (0.4, 4)
    # Exactly the kept files are on disk, and each holds its epoch's weights.
    assert stems(tmp_path, "min-score-") == ["min-score-2", "min-score-4", "min-score-6"]
    for entry in s["kept"]:
        info = checkpoint.restore(net, str(tmp_path / entry["checkpoint"]))
        assert (info.epoch, info.global_step) == (entry["epoch"], entry["global_step"])
        for a, b in zip(net.get_weights(), scripted.weights[entry["epoch"]]):
            np.testing.assert_array_equal(a, b)


def test_keep_best_one_is_todays_saver_and_a_tie_keeps_the_earlier(tmp_path):
    saver = MaxSaver("score", checkpoint_dir=tmp_path)
    fit([saver, Scripted([0.5, 0.8, 0.8, 0.3])], 4)
    s = state(tmp_path, "max-score")
    assert (s["best"], s["epoch"], s["global_step"]) == (0.8, 2, 26)  # the second 0.8 does not replace it
    assert stems(tmp_path) == ["max-score-2"] and [e["epoch"] for e in s["kept"]] == [2]
    two = MaxSaver("score", checkpoint_dir=tmp_path / "two", keep_best=2)
    fit([two, Scripted([0.8, 0.5, 0.8, 0.8])], 4)
    assert [e["epoch"] for e in state(tmp_path / "two", "max-score")["kept"]] == [1, 3]


def test_a_resumed_run_continues_the_list(tmp_path):
    first = MinSaver("score", checkpoint_dir=tmp_path, keep_best=2)
    fit([first, Scripted([0.9, 0.5, 0.7])], 3)
    assert [e["epoch"] for e in first.kept] == [2, 3]
    net, done = resumable(kept_path(tmp_path, 3))  # the latest saved: epoch 3's step
    assert done == 3
    second = MinSaver("score", checkpoint_dir=tmp_path, keep_best=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a resume: nothing is moved aside
        fit([second, Scripted([0.6, 0.95])], 5, net, initial_epoch=done)
    assert [(e["value"], e["epoch"]) for e in state(tmp_path)["kept"]] == [(0.5, 2), (0.6, 4)]
    assert stems(tmp_path) == ["min-score-2", "min-score-4"]


def test_a_new_run_moves_the_whole_list_aside(tmp_path):
    fit([MinSaver("score", checkpoint_dir=tmp_path, keep_best=3), Scripted([0.3, 0.2, 0.1])], 3)
    with pytest.warns(RuntimeWarning, match="run-1"):
        fit([MinSaver("score", checkpoint_dir=tmp_path, keep_best=3), Scripted([2.0, 1.0])], 2)
    assert [e["epoch"] for e in state(tmp_path / "run-1")["kept"]] == [3, 2, 1]
    assert stems(tmp_path / "run-1") == ["min-score-1", "min-score-2", "min-score-3"]
    assert [e["epoch"] for e in state(tmp_path)["kept"]] == [2, 1]
    assert stems(tmp_path) == ["min-score-1", "min-score-2"]
    net, _ = resumable(kept_path(tmp_path / "run-1", 2))  # a kept one of the old run restores


def test_keep_best_with_a_runner_on_real_validation(tmp_path):
    """Real validation numbers (the loss of an SGD fit that goes up and
    down): the kept ones are the 2 smallest of History's values."""
    saver = MinSaver("validation_loss", checkpoint_dir=tmp_path, keep_best=2)
    import keras
    keras.utils.set_random_seed(1)
    net = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    net.compile(optimizer=keras.optimizers.SGD(1.5),  # too large a step: a noisy validation loss
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    val = train_ds().take(3)
    history = net.fit(train_ds(), epochs=6, verbose=0, callbacks=[
        saver, InferenceRunner(val, ScalarStats("loss"), verbose=False)])
    losses = history.history["validation_loss"]
    order = sorted(range(len(losses)), key=lambda i: losses[i])[:2]
    assert [e["epoch"] for e in saver.kept] == [i + 1 for i in order]
    assert [e["value"] for e in saver.kept] == pytest.approx([losses[i] for i in order])
    assert stems(tmp_path) == sorted(f"min-validation_loss-{i + 1}" for i in order)


def test_a_smaller_keep_best_on_resume_trims_the_list(tmp_path):
    fit([MaxSaver("score", checkpoint_dir=tmp_path, keep_best=3), Scripted([0.1, 0.2, 0.3])], 3)
    net, done = resumable(kept_path(tmp_path, 3, "max-score"))
    fit([MaxSaver("score", checkpoint_dir=tmp_path, keep_best=1), Scripted([0.05])], 4, net, initial_epoch=done)
    assert [e["epoch"] for e in state(tmp_path, "max-score")["kept"]] == [3]
    assert stems(tmp_path) == ["max-score-3"]


def test_keep_best_is_checked():
    with pytest.raises(ValueError, match="keep_best=0"):
        MinSaver("score", keep_best=0)


@pytest.mark.tensorflow_only("PredictConfig / OfflinePredictor need TensorFlow")
def test_predict_config_reads_any_kept_checkpoint(tmp_path):
    from infer_callbacks import OfflinePredictor, PredictConfig
    from test_savers import model as make_model

    scripted = Scripted([0.3, 0.1, 0.2])
    fit([MinSaver("score", checkpoint_dir=tmp_path, keep_best=2), scripted], 3)
    x = np.random.default_rng(0).normal(size=(5, 64)).astype("float32")
    for entry in state(tmp_path)["kept"]:
        (out,) = OfflinePredictor(PredictConfig(model=make_model(5), session_init=str(tmp_path / entry["checkpoint"])))(x)
        reference = make_model(6)
        reference.set_weights(scripted.weights[entry["epoch"]])
        np.testing.assert_allclose(out, reference.predict_on_batch(x), rtol=1e-5, atol=1e-6)
