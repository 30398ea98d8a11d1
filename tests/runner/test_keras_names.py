"""``InferenceRunner(..., keras_names=True)``: results as ``val_X``, the names
Keras's own callbacks understand (``EarlyStopping(mode="auto")``, Keras's
``TensorBoard`` validation run)."""

from __future__ import annotations

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import ClassificationError, InferenceRunner, ScalarStats
from infer_callbacks.runner.keras_names import keras_name


def _data(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)).astype("float32"), rng.integers(0, 3, size=n).astype("int32")


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


X, Y = _data(64, 0)
XV, YV = _data(37, 1)


def _runner(**kwargs):
    return InferenceRunner([(XV, YV)], [ScalarStats("loss"), ClassificationError()], verbose=False, **kwargs)


def test_keys_are_renamed_everywhere_and_equal_evaluate():
    model = _model()
    runner = _runner(keras_names=True)
    history = model.fit(X, Y, epochs=2, verbose=0, callbacks=[runner])
    assert {"val_loss", "val_error"} <= set(history.history)
    assert not any(k.startswith("validation_") for k in history.history)
    assert set(runner.last_results) == {"val_loss", "val_error"}
    assert [set(r.scalars) for r in runner.pop_reports()] == [{"val_loss", "val_error"}] * 2
    loss, acc = model.evaluate(XV, YV, verbose=0)
    np.testing.assert_allclose(history.history["val_loss"][-1], loss, rtol=1e-5)
    np.testing.assert_allclose(history.history["val_error"][-1], 1 - acc, atol=1e-6)


def test_early_stopping_in_auto_mode_needs_keras_names():
    stop = keras.callbacks.EarlyStopping(monitor="validation_loss", patience=5)  # mode="auto"
    with pytest.raises(ValueError, match="automatically determine"):
        _model().fit(X, Y, epochs=1, verbose=0, callbacks=[_runner(), stop])

    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5)
    history = _model().fit(X, Y, epochs=3, verbose=0, callbacks=[stop, _runner(keras_names=True)])
    assert stop.best == min(history.history["val_loss"])  # it saw every epoch's value, minimizing


def test_keras_tensorboard_files_the_results_under_its_validation_run(tmp_path):
    runner = _runner(keras_names=True)
    _model().fit(X, Y, epochs=2, verbose=0,
                 callbacks=[keras.callbacks.TensorBoard(str(tmp_path)), runner])
    found: dict[str, dict] = {"train": {}, "validation": {}}
    for run in found:
        for path in glob.glob(os.path.join(tmp_path, run, "events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    if not value.tag.startswith("epoch_"):
                        continue  # the model graph, keras's config
                    found[run].setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    assert len(found["validation"]["epoch_loss"]) == 2
    assert found["validation"]["epoch_loss"][-1] == pytest.approx(runner.last_results["val_loss"], rel=1e-6)
    assert "epoch_error" in found["validation"] and "epoch_error" not in found["train"]
    assert not any(tag.startswith(("epoch_val", "epoch_validation")) for tag in found["train"])


def test_keras_validation_data_already_holding_val_loss_is_refused():
    with pytest.raises(ValueError, match=r"\['val_loss'\].*already hold"):
        _model().fit(X, Y, epochs=1, verbose=0, validation_data=(XV, YV),
                     callbacks=[InferenceRunner([(XV, YV)], ScalarStats("loss"), keras_names=True, verbose=False)])


def test_two_keys_that_become_one_are_named():
    runner = InferenceRunner([(XV, YV)], [ScalarStats("loss"), ScalarStats("loss", prefix="val")],
                             keras_names=True, verbose=False)
    runner.set_model(_model())
    with pytest.raises(ValueError, match=r"'validation_loss' and 'val_loss'.*'val_loss'"):
        runner.trigger()


def test_only_the_validation_prefix_is_renamed():
    assert keras_name("validation_loss") == "val_loss"
    assert keras_name("validation_top5_error") == "val_top5_error"
    assert keras_name("val_precision") == "val_precision"
    assert keras_name("my_validation_loss") == "my_validation_loss"
    with pytest.raises(TypeError, match="keras_names='yes'"):
        InferenceRunner([(XV, YV)], ScalarStats("loss"), keras_names="yes")
