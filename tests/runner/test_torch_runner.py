"""The runner under Keras's PyTorch backend, where it differs from the
shared tests: torch inputs (a ``DataLoader``, an iterable of torch tensors,
``(x, y)`` torch tensors), ``DataParallelInferenceRunner`` on the one CPU
device, and what an asynchronous run relies on (``keras.StatelessScope`` and
torch's grad mode belong to the thread that sets them). Every number is
checked against numpy and ``evaluate``."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytestmark = pytest.mark.not_on_backend("tensorflow", "jax", reason="torch inputs and devices need KERAS_BACKEND=torch")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from infer_callbacks import (ClassificationError, DataParallelInferenceRunner, Inferencer,  # noqa: E402
                             InferenceRunner, ScalarStats)

N, BATCH = 103, 16  # 7 batches, the last of 7


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 5)).astype("float32")
    y = rng.integers(0, 3, size=N).astype("int64")
    return x, y


def _model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _reference(model, x, y):
    """Mean cross-entropy and top-1 error over the whole set, in numpy (float64)."""
    logits = np.asarray(model.predict(x, batch_size=N, verbose=0), "float64")
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean(), float((logits.argmax(-1) != y).mean())


class Batches(Inferencer):
    """Records each batch's labels, to check order and whole batches."""

    def _get_fetches(self):
        return ["label"]

    def _before_inference(self):
        self.seen = []

    def _on_fetches(self, results):
        self.seen.append(np.array(results[0]))


def _check(runner, model, x, y, prefix="validation"):
    loss, error = _reference(model, x, y)
    results = runner.trigger()
    np.testing.assert_allclose(results[f"{prefix}_loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(results[f"{prefix}_error"], error, atol=1e-7)
    return results


def test_a_dataloader_and_iterables_of_torch_tensors_equal_numpy_and_evaluate():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH)
    as_list = [(torch.from_numpy(x[i:i + BATCH]), torch.from_numpy(y[i:i + BATCH])) for i in range(0, N, BATCH)]
    seen = Batches()
    for source, infs in ((loader, [seen]), (as_list, []), ((torch.from_numpy(x), torch.from_numpy(y)), [])):
        runner = InferenceRunner(source, [ScalarStats("loss"), ClassificationError()] + infs,
                                 **({"batch_size": BATCH} if isinstance(source, tuple) else {}), verbose=False)
        runner.set_model(model)
        _check(runner, model, x, y)
    assert [len(b) for b in seen.seen] == [BATCH] * 6 + [7]
    np.testing.assert_array_equal(np.concatenate(seen.seen), y)
    loss, acc = model.evaluate(loader, verbose=0)  # Keras reads the same DataLoader
    np.testing.assert_allclose(runner.last_results["validation_loss"], loss, rtol=1e-5)


def test_a_dataloader_in_fit_is_measured_every_epoch_and_rerun_from_its_first_batch():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _data(1)
    model = _model()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH)
    runner = InferenceRunner(loader, [ScalarStats("loss"), ClassificationError()], verbose=False)
    history = model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[runner])
    loss, acc = model.evaluate(loader, verbose=0)
    np.testing.assert_allclose(history.history["validation_loss"][-1], loss, rtol=1e-5)
    np.testing.assert_allclose(history.history["validation_error"][-1], 1 - acc, atol=1e-6)
    assert len(history.history["validation_loss"]) == 2


def test_data_parallel_on_the_cpu_equals_the_plain_runner():
    x, y = _data(2)
    model = _model()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    plain_batches, dp_batches = Batches(), Batches()
    plain = InferenceRunner(val, [ScalarStats("loss"), ClassificationError(), plain_batches], verbose=False)
    dp = DataParallelInferenceRunner(val, [ScalarStats("loss"), ClassificationError(), dp_batches],
                                     gpus=["/cpu:0"])
    dp.verbose = False
    for r in (plain, dp):
        r.set_model(model)
    assert _check(dp, model, x, y) == plain.trigger()
    assert [b.tolist() for b in dp_batches.seen] == [b.tolist() for b in plain_batches.seen]
    device = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()], device="/cpu:0", verbose=False)
    device.set_model(model)
    assert device.trigger() == plain.last_results


def test_stateless_scope_and_no_grad_belong_to_the_thread_that_sets_them():
    """What an asynchronous run relies on: the background thread reads a
    snapshot under keras.StatelessScope and torch.no_grad while training in
    the main thread reads and differentiates the variables."""
    import torch

    variable = keras.Variable(np.ones(3, "float32"))
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def background():
        with torch.no_grad(), keras.StatelessScope(state_mapping=[(variable, torch.zeros(3))]):
            seen["background"] = keras.ops.convert_to_numpy(variable.value).tolist()
            inside.set()
            release.wait(timeout=60)

    thread = threading.Thread(target=background)
    thread.start()
    try:
        assert inside.wait(timeout=60)
        assert keras.ops.convert_to_numpy(variable.value).tolist() == [1.0, 1.0, 1.0]
        assert torch.is_grad_enabled()
    finally:
        release.set()
        thread.join(timeout=60)
    assert seen["background"] == [0.0, 0.0, 0.0]


def test_asynchronous_snapshot_is_a_copy_that_training_does_not_change():
    x, y = _data(3)
    model = _model()
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    runner = InferenceRunner(val, [ScalarStats("loss"), ClassificationError()], asynchronous=True, verbose=False)
    snapshot_of = {}

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshot_of[epoch + 1] = [np.array(w) for w in self.model.get_weights()]

    history = model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, callbacks=[Keep(), runner])
    assert runner.snapshot_nbytes == sum(w.nbytes for w in model.get_weights())
    check = _model()
    check.set_weights(snapshot_of[3])
    loss, error = _reference(check, x, y)
    np.testing.assert_allclose(history.history["validation_loss"][-1], loss, rtol=1e-5)
    np.testing.assert_allclose(history.history["validation_error"][-1], error, atol=1e-7)


@pytest.mark.parametrize("feature", ["TrainConfig", "PredictConfig", "SidecarEvaluator"])
def test_what_needs_tensorflow_says_so_naming_the_torch_backend(feature, tmp_path):
    from infer_callbacks import PredictConfig, SidecarEvaluator, TrainConfig

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    make = {
        "TrainConfig": lambda: TrainConfig(model=model, data=[(np.zeros((2, 3)), np.zeros(2))]),
        "PredictConfig": lambda: PredictConfig(model=model),
        "SidecarEvaluator": lambda: SidecarEvaluator(model, [(np.zeros((2, 3), "float32"),)], ScalarStats("loss"),
                                                     checkpoint_dir=str(tmp_path), checkpoint_format="tensorflow"),
    }[feature]
    with pytest.raises(RuntimeError, match="TensorFlow backend.*KERAS_BACKEND='torch'"):
        make()
