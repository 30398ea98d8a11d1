"""binding: a runner bound to one model at a time. The trace checks every
fetch name before training; the step is kept while the model stays; nothing
is stored on the user's model."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import ClassificationError, InferenceRunner, ScalarStats

pytestmark = pytest.mark.tensorflow_only("the TensorFlow engine's binding")


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _ds(n=30, batch=8):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = rng.integers(0, 3, size=n).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


class Steps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.batches += 1


def test_unknown_name_fails_before_any_training_step():
    steps, model = Steps(), _model()
    stats = ScalarStats(["loss", "no_such_tensor"])
    with pytest.raises(ValueError, match=r"'no_such_tensor'.*Available names: \[.*'loss'.*'wrong-top1'") as info:
        model.fit(_ds(), epochs=1, verbose=0, callbacks=[steps, InferenceRunner(_ds(), [stats])])
    assert "ScalarStats" in str(info.value)  # which inferencer asked for it
    assert steps.batches == 0 and int(model.optimizer.iterations.numpy()) == 0


def test_unknown_name_lists_the_named_ops_of_a_custom_tower():
    model = _model()

    def tower(x, label):
        logits = model(x, training=False)
        tf.nn.softmax(logits, name="prob")
        tf.reduce_mean(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) != label, tf.float32), name="err")
        return {"logits": logits}

    runner = InferenceRunner(_ds(), ScalarStats("nope"), tower_func=tower)
    runner.set_model(model)
    with pytest.raises(ValueError, match=r"'nope'.*Available names: \['err', 'label', 'logits', 'prob', 'x'\]"):
        runner.setup()


def test_same_model_keeps_its_step_another_model_gets_its_own():
    first, second = _model(1), _model(2)
    runner = InferenceRunner(_ds(), [ScalarStats("loss"), ClassificationError()])
    runner.set_model(first)
    runner.setup()
    runner.trigger()
    runner.setup()
    assert runner.trigger() == runner.last_results and runner.tracing_count == 1
    runner.set_model(second)
    np.testing.assert_allclose(runner.trigger()["validation_loss"], second.evaluate(_ds(), verbose=0), rtol=1e-5)
    runner.set_model(first)
    np.testing.assert_allclose(runner.trigger()["validation_loss"], first.evaluate(_ds(), verbose=0), rtol=1e-5)


def test_nothing_is_stored_on_the_model():
    model = _model()
    model.predict(np.zeros((1, 5), "float32"), verbose=0)
    before = set(vars(model))
    runner = InferenceRunner(_ds(), ScalarStats("loss"))
    model.fit(_ds(), epochs=1, verbose=0, callbacks=[runner])
    runner.trigger()
    added = {k for k in set(vars(model)) - before if not k.startswith("_")}
    assert not any(isinstance(v, InferenceRunner) for v in vars(model).values())
    assert added <= {"history", "stop_training"}, added


class Calls(keras.callbacks.Callback):
    """Counts the runner's step calls (one ``on_test_batch_end`` each)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def on_test_batch_end(self, batch, logs=None):
        self.calls += 1


def test_a_second_pass_starts_at_the_pace_the_first_reached():
    model, calls = _model(), Calls()
    runner = InferenceRunner(_ds(n=400, batch=4), ScalarStats("loss"), verbose=False)
    callbacks = keras.callbacks.CallbackList([calls, runner], model=model)  # the runner joins its run
    first = runner.trigger()
    first_calls, calls.calls = calls.calls, 0
    second = runner.trigger()
    # 100 batches: the first pass ramps up from one batch a call (1, 2, 4, ...:
    # at least 7 calls); the second starts where the first ended.
    assert first_calls >= 7 and calls.calls < first_calls, (first_calls, calls.calls)
    assert second == first
    del callbacks
    reference = model.evaluate(_ds(n=400, batch=400), verbose=0)
    assert second["validation_loss"] == pytest.approx(reference, rel=1e-5)
