"""PredictConfig / OfflinePredictor: restore, run, and refuse bad input clearly."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import make_keras, trained_keras  # noqa: F401
from helpers.predict import Classifier, log_softmax, x  # noqa: F401
from infer_callbacks import OfflinePredictor, PredictConfig
from infer_callbacks.checkpoints import layout as checkpoint
from infer_callbacks.predict.predictor import get_predictor, restore_weights

pytestmark = pytest.mark.tensorflow_only("PredictConfig, OfflinePredictor and export need TensorFlow")


def test_keras_checkpoint_dir_restores_latest_any_batch_size_one_trace(keras_ckpt, x, rng):
    trained, directory, _ = keras_ckpt
    predictor = OfflinePredictor(PredictConfig(model=make_keras(), session_init=directory))
    assert predictor.input_names == ["input"] and predictor.output_names == ["output"]
    for n in (1, 11, 5, 0, 37):
        batch = rng.normal(size=(n, 4)).astype("float32")
        (out,) = predictor(batch)
        np.testing.assert_allclose(out, trained(batch, training=False).numpy(), rtol=1e-6, atol=1e-6)
    assert predictor.tracing_count == 1
    (by_name,) = predictor(input=x.astype("float64"))  # float64 is cast to the signature's float32
    np.testing.assert_allclose(by_name, trained(x).numpy(), rtol=1e-6, atol=1e-6)


def test_checkpoint_prefix_and_index_file(keras_ckpt, x):
    trained, _, prefix = keras_ckpt
    for path in (prefix, prefix + ".index"):
        (out,) = OfflinePredictor(PredictConfig(model=make_keras(), session_init=path))(x)
        np.testing.assert_allclose(out, trained(x).numpy(), rtol=1e-6, atol=1e-6)


def test_without_session_init_uses_current_weights(rng, x):
    model = trained_keras(rng)
    (out,) = OfflinePredictor(PredictConfig(model=model))(x)
    np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-6, atol=1e-6)


def test_model_desc_outputs_that_need_the_label(rng, x):
    desc = Classifier()
    label = rng.integers(0, 3, size=len(x)).astype("int32")
    predictor = OfflinePredictor(PredictConfig(model=desc, output_names=["wrong", "cost", "label"]))
    assert predictor.input_names == ["x", "label"]
    wrong, cost, label_out = predictor(x, label)
    logits = desc.net(x, training=False).numpy()
    np.testing.assert_array_equal(wrong, (logits.argmax(1) != label).astype("float32"))
    np.testing.assert_allclose(cost, -log_softmax(logits)[np.arange(len(x)), label].mean(), rtol=1e-5)
    np.testing.assert_array_equal(label_out, label)


def test_keras_with_label_signature_exposes_loss_and_wrong(rng, x):
    model = trained_keras(rng)
    label = rng.integers(0, 3, size=len(x))
    config = PredictConfig(model=model, output_names=["loss", "wrong-top1"], input_signature=[
        tf.TensorSpec((None, 4), tf.float32, "features"), tf.TensorSpec((None,), tf.int32, "label")])
    loss, wrong = OfflinePredictor(config)(x, label)
    logits = model(x).numpy()
    np.testing.assert_allclose(loss, -log_softmax(logits)[np.arange(len(x)), label], rtol=1e-5)
    np.testing.assert_array_equal(wrong, (logits.argmax(1) != label).astype("float32"))


def test_tower_func_decodes_inside_the_graph(rng):
    model = trained_keras(rng)
    images = rng.integers(0, 256, size=(6, 4)).astype("uint8")

    def tower(raw):
        return {"prob": tf.nn.softmax(model(tf.cast(raw, tf.float32) / 255.0, training=False))}

    config = PredictConfig(model=model, tower_func=tower,
                           input_signature=[tf.TensorSpec((None, 4), tf.uint8, "raw")])
    predictor = OfflinePredictor(config)
    assert predictor.output_names == ["prob"]  # every key the tower returns
    (prob,) = predictor(images)
    expected = np.exp(log_softmax(model(images.astype("float32") / 255.0).numpy()))
    np.testing.assert_allclose(prob, expected, rtol=1e-5, atol=1e-6)


def test_get_predictor_shares_the_weights(x):
    desc = Classifier()
    predict = get_predictor(desc, ["x"], ["logits"])
    desc.net.layers[-1].bias.assign([1.0, 2.0, 3.0])  # later training steps are seen
    (logits,) = predict(x)
    np.testing.assert_allclose(logits, desc.net(x, training=False).numpy(), rtol=1e-6, atol=1e-6)
    assert predict.tracing_count == 1


def test_restore_weights_of_a_model_desc_and_bad_paths(rng, x, tmp_path):
    trained = Classifier()
    trained.net(x)
    path = checkpoint.save(trained, tmp_path / "ckpt")
    fresh = Classifier()
    fresh.net(x)
    restore_weights(fresh, path)
    np.testing.assert_array_equal(fresh.net(x, training=False), trained.net(x, training=False))


# -- bad input --------------------------------------------------------------


def test_checkpoint_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "nope" / "ckpt-3")
    with pytest.raises(FileNotFoundError, match=r"ckpt-3.*does not exist"):
        OfflinePredictor(PredictConfig(model=make_keras(), session_init=missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"No checkpoint in directory .*empty"):
        OfflinePredictor(PredictConfig(model=make_keras(), session_init=str(empty)))
    with pytest.raises(FileNotFoundError, match=r"gone\.weights\.h5"):
        PredictConfig(model=make_keras(), session_init=str(tmp_path / "gone.weights.h5"))
    weights = str(tmp_path / "model.weights.h5")
    make_keras().save_weights(weights)
    with pytest.raises(TypeError, match=r"model\.weights\.h5' is a Keras weights file; it needs a keras.Model"):
        PredictConfig(model=Classifier(), session_init=weights)


def test_unknown_output_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown output name 'probs'.*\['cost', 'label', 'logits', 'prob', 'wrong', 'x'\]"):
        OfflinePredictor(PredictConfig(model=Classifier(), output_names=["probs"]))


def test_output_that_needs_an_input_not_fed():
    with pytest.raises(ValueError, match=r"Output 'wrong' depends on input\(s\) \['label'\]"):
        OfflinePredictor(PredictConfig(model=Classifier(), input_names=["x"], output_names=["wrong"]))


def test_bad_call_arguments(x):
    predictor = OfflinePredictor(PredictConfig(model=Classifier(), input_names=["x"],
                                               output_names=["prob"]))
    with pytest.raises(ValueError, match=r"Input 'x' must have shape \(None, 4\).*\(11, 3\)"):
        predictor(x[:, :3])
    with pytest.raises(ValueError, match=r"Unknown input name 'image'.*\['x'\]"):
        predictor(image=x)
    with pytest.raises(TypeError, match=r"Missing input\(s\) \['x'\]"):
        predictor()


def test_lossy_input_cast_is_refused(x):
    model = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Lambda(lambda t: tf.cast(t, "float32"))])
    predictor = OfflinePredictor(PredictConfig(model=model))
    with pytest.raises(TypeError, match=r"expects int32, received float32.*astype"):
        predictor(x)
    np.testing.assert_array_equal(predictor(np.arange(8).reshape(2, 4))[0], np.arange(8).reshape(2, 4))
