"""The training step of each model kind: a ModelDesc's step gives the
weights and losses of plain numpy SGD; a Keras model's step gives what
Keras ``fit`` gives (weights, History, the same hooks)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers.trainer import (XT, XV, YT, YV, Linear, Recorder, keras_model, batches_of, ce_and_logits,
                          numpy_sgd, train_ds, val_ds)
from infer_callbacks import (ClassificationError, InferenceRunner, ScalarStats, SimpleTrainer, TrainConfig,
                             launch_train_with_config)

pytestmark = pytest.mark.tensorflow_only("the ModelDesc trainer host needs TensorFlow")


def test_modeldesc_matches_numpy_sgd_and_validation(tmp_path):
    model = Linear()
    runner = InferenceRunner(val_ds(), [ScalarStats("cost"), ClassificationError("wrong-top1")], verbose=False)
    trainer = SimpleTrainer()
    config = TrainConfig(model=model, data=train_ds(), max_epoch=2, verbose=0, callbacks=[runner])
    history = launch_train_with_config(config, trainer)

    w, b, losses = numpy_sgd(batches_of(XT, YT, 32), 2)
    kernel, bias = [v.numpy() for v in trainer.model.trainable_variables]
    np.testing.assert_allclose(kernel, w, atol=2e-5)
    np.testing.assert_allclose(bias, b, atol=2e-5)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-5)
    # Validation runs build_graph in inference mode, with the final weights.
    ce, logits = ce_and_logits(kernel, bias, XV, YV)
    np.testing.assert_allclose(history.history["validation_cost"][-1], ce.mean(), rtol=1e-5)
    assert history.history["validation_error"][-1] == pytest.approx(np.mean(logits.argmax(1) != YV), abs=1e-12)
    assert runner.num_samples_last_run == len(XV)
    assert True in model.modes and False in model.modes
    # The validation tower is traced after the training step, in inference mode
    # (build-time traces before the first training trace do not count).
    assert False in model.modes[model.modes.index(True):]
    assert len(trainer.model.weights) == 2  # no new variables from the inference tower

    predict = trainer.get_predictor(["x", "label"], ["logits", "wrong-top1"])
    got_logits, wrong = predict(XV, YV)
    np.testing.assert_allclose(got_logits, logits, atol=1e-4)
    predict_x = trainer.get_predictor(["x"], ["logits"])  # label not needed for logits
    np.testing.assert_allclose(predict_x(XV)[0], logits, atol=1e-4)
    with pytest.raises(ValueError, match="label"):
        trainer.get_predictor(["x"], ["wrong-top1"])  # depends on the label that is not fed


def test_keras_model_same_as_fit_and_same_hooks():
    keras.utils.set_random_seed(1)
    ref = keras_model()
    init = ref.get_weights()
    rec_fit = Recorder()
    fit_hist = ref.fit(train_ds(), epochs=2, verbose=0, shuffle=False, callbacks=[
        rec_fit, InferenceRunner(val_ds(), [ScalarStats("loss"), ClassificationError()], verbose=False)])

    model = keras_model()
    model.set_weights(init)
    rec = Recorder()
    config = TrainConfig(model=model, data=train_ds(), max_epoch=2, verbose=0, callbacks=[
        rec, InferenceRunner(val_ds(), [ScalarStats("loss"), ClassificationError()], verbose=False)])
    history = launch_train_with_config(config, SimpleTrainer())

    assert rec.calls == rec_fit.calls  # same hooks, order, indices and logs keys
    assert set(history.history) == set(fit_hist.history)
    for key, values in fit_hist.history.items():
        np.testing.assert_allclose(history.history[key], values, rtol=1e-5, err_msg=key)
    for a, b in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
