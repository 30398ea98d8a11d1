"""Towers: TowerContext, name resolution, the exact-sum extras of
replica_fn (the default Keras tower is tested in test_keras_tower.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import TowerContext, get_current_tower_context
from infer_callbacks.distribute.devices import canonical_device as _canonical_device  # tests move to test_devices.py
from infer_callbacks.towers.keras_tower import keras_tower_func
from infer_callbacks.towers.names import find_named_op as _find_named_op
from infer_callbacks.towers.spec import TowerSpec, UnknownFetchError, exact_keys


def test_tower_context_nests_and_unwinds():
    assert get_current_tower_context() is None
    with TowerContext("train", is_training=True):
        assert get_current_tower_context().is_training
        with TowerContext("infer", is_training=False) as inner:
            assert get_current_tower_context() is inner and not inner.is_training
        assert get_current_tower_context().name == "train"
    assert get_current_tower_context() is None


def _classifier(classes=7, loss=None):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5), keras.layers.Dense(classes)])
    model.compile(optimizer="sgd", loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("one_hot", [False, True])
def test_keras_tower_outputs_against_numpy(one_hot):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(13, 4)).astype("float32")
    y = rng.integers(0, 7, size=13).astype("int32")
    loss = keras.losses.CategoricalCrossentropy(from_logits=True) if one_hot else None
    model = _classifier(loss=loss)
    label = np.eye(7, dtype="float32")[y] if one_hot else y
    out = {k: keras.ops.convert_to_numpy(v)
           for k, v in keras_tower_func(model)(tf.constant(x), tf.constant(label)).items()}
    logits = x @ model.layers[-1].kernel.numpy() + model.layers[-1].bias.numpy()  # dropout off
    np.testing.assert_allclose(out["output"], logits, rtol=1e-5, atol=1e-6)
    z = logits.astype(np.float64) - logits.max(1, keepdims=True)
    ce = -(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(13), y]
    np.testing.assert_allclose(out["loss"], ce, rtol=1e-5)
    np.testing.assert_array_equal(out["wrong-top1"], (logits.argmax(1) != y).astype(np.float32))
    top5 = np.argsort(-logits, 1)[:, :5]
    np.testing.assert_array_equal(out["wrong-top5"], (~(top5 == y[:, None]).any(1)).astype(np.float32))


def test_keras_tower_without_labels_and_few_classes():
    model = _classifier(classes=3)
    out = keras_tower_func(model)(tf.zeros((2, 4)))
    assert set(out) >= {"output"} and "loss" not in out and "wrong-top1" not in out
    out = keras_tower_func(model)(tf.zeros((2, 4)), tf.zeros((2,), tf.int32))
    assert "wrong-top1" in out and "wrong-top5" not in out  # top-5 needs 5 classes


def test_names_resolve_by_key_input_and_named_op():
    def tower(x, label):
        doubled = tf.identity(x * 2, name="doubled")
        tf.identity(doubled + 1, name="doubled")  # uniquified to doubled_1: the first wins
        return {"sum": tf.reduce_sum(x, 1)}

    spec = (tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None,), tf.int32))
    tower_spec = TowerSpec(tower, spec)
    fn = tf.function(tower_spec.replica_fn(["sum", "label", "doubled"]))
    out = fn((tf.ones((2, 3)), tf.constant([4, 5])))
    np.testing.assert_array_equal(out["sum"].numpy(), [3, 3])
    np.testing.assert_array_equal(out["label"].numpy(), [4, 5])
    np.testing.assert_array_equal(out["doubled"].numpy(), np.full((2, 3), 2.0))
    np.testing.assert_array_equal(out["__num_samples__"].numpy(), [2])
    with pytest.raises(UnknownFetchError, match=r"'nope'.*\['doubled', 'doubled_1', 'label', 'sum', 'x'\]"):
        tf.function(tower_spec.replica_fn(["nope"]), autograph=False).get_concrete_function(spec)


def test_find_named_op_prefers_exact_then_scoped_then_uniquified():
    g = tf.Graph()
    with g.as_default():
        a = tf.identity(tf.constant(1.0), name="cost_1")
        with tf.name_scope("replica_1"):
            b = tf.identity(tf.constant(2.0), name="prob")
    ops = g.get_operations()
    assert _find_named_op(ops, "prob") is b.op
    assert _find_named_op(ops, "prob:0") is b.op
    assert _find_named_op(ops, "cost") is a.op  # a uniquified "cost"
    assert _find_named_op(ops, "missing") is None


@pytest.mark.parametrize("name", ["/cpu:0", "cpu:0", "CPU:0", "/device:CPU:0", "/job:localhost/replica:0/task:0/device:CPU:0"])
def test_device_names_are_canonical(name):
    assert _canonical_device(name).endswith("device:CPU:0")


@pytest.mark.parametrize("name", ["/gpu:0", "/cpu:9", "banana"])
def test_missing_devices_list_the_available_ones(name):
    with pytest.raises(ValueError, match=r"does not exist.*Available devices: \[.*CPU:0"):
        _canonical_device(name)


def test_name_and_name_colon_zero_are_the_same_for_keys_inputs_and_ops():
    def tower(x, label):
        tf.identity(x * 3, name="tripled")
        return {"sum": tf.reduce_sum(x, 1), "prob:0": x[:, 0]}

    spec = (tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None,), tf.int32))
    fn = tf.function(TowerSpec(tower, spec).replica_fn(["sum:0", "label:0", "tripled:0", "tripled", "prob"]))
    out = {k: v.numpy() for k, v in fn((tf.ones((2, 3)), tf.constant([4, 5]))).items()}
    np.testing.assert_array_equal(out["sum:0"], [3, 3])
    np.testing.assert_array_equal(out["label:0"], [4, 5])
    np.testing.assert_array_equal(out["tripled:0"], out["tripled"])
    np.testing.assert_array_equal(out["prob"], [1, 1])


@pytest.mark.parametrize("fetch", [tf.constant([1.0]), keras.Input((3,)), 3], ids=["eager", "keras", "int"])
def test_a_tensor_instead_of_a_name_says_to_return_its_name(fetch):
    spec = (tf.TensorSpec((None, 3), tf.float32),)
    with pytest.raises(TypeError, match=r"return the tensor's name from `_get_fetches`. Received: "):
        TowerSpec(lambda x: {"y": x}, spec).replica_fn(["y", fetch])


def test_graph_tensor_fetch_error_names_the_tensor():
    with tf.Graph().as_default():
        logits = tf.identity(tf.zeros([2]), name="logits")
        with pytest.raises(TypeError, match=r"\(here 'logits'\)"):
            TowerSpec(lambda x: {"y": x}, (tf.TensorSpec((None,)),)).replica_fn([logits])


def test_replica_fn_adds_exact_sums_and_sample_weights_the_tower_returned():
    def tower(x, label):
        err = tf.cast(tf.not_equal(tf.argmax(x, 1, output_type=tf.int32), label), tf.float32)
        return {"err": err, **dict(zip(exact_keys("err"), (2 * err, 2 * tf.ones_like(err)))),
                "#sample_weight": tf.ones_like(err), "other": err, "other#num": err}

    spec = (tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None,), tf.int32))
    ranks = {}
    fn = tf.function(TowerSpec(tower, spec).replica_fn(["err:0", "other"], ranks))
    out = fn((tf.eye(3), tf.constant([0, 2, 2])))
    assert set(out) == {"err:0", "err:0#num", "err:0#den", "other", "#sample_weight", "__num_samples__"}
    np.testing.assert_array_equal(out["err:0#num"].numpy(), [0, 2, 0])
    assert ranks["err:0#den"] == 1 and "other#num" not in out  # no #den: not exact


@pytest.mark.not_on_backend("torch", reason="TowerSpec is the TensorFlow engine's; the PyTorch engine's tower: tests/runner/engine/test_torch_step.py, tower_backend.py")
def test_keras_batches_name_their_sample_weights():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    spec = (tf.TensorSpec((None, 2)), tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None,)))
    fn = TowerSpec(keras_tower_func(model), spec, keras_default=True).replica_fn(
        ["loss", "sample_weight", "input:0", "wrong-top1"])
    out = fn((tf.ones((2, 2)), tf.constant([0, 1]), tf.constant([0.5, 2.0])))
    np.testing.assert_array_equal(out["#sample_weight"].numpy(), [0.5, 2.0])
    np.testing.assert_array_equal(out["sample_weight"].numpy(), [0.5, 2.0])
    assert out["loss#num"].shape == (2, 1) and out["wrong-top1#den"].shape == (2,)


def test_docstring_examples_run():
    import doctest

    import infer_callbacks.towers.spec as module

    assert doctest.testmod(module).failed == 0


def test_names_docstring_examples_run():
    import doctest

    import infer_callbacks.towers.names as module

    assert doctest.testmod(module).failed == 0
