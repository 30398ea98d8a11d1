"""siblings: finding the CallbackList that holds a callback, and moving
validation producers ahead of the others. This is the one place that
depends on how Keras's ``fit`` keeps its callbacks; the tests carry the
installed Keras version in their ids so a Keras upgrade that breaks it says
so."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import InferenceRunner, PeriodicTrigger, ScalarStats
from infer_callbacks import siblings

KERAS = f"keras-{keras.__version__}"
VAL = [(np.zeros((4, 3), "float32"), np.zeros(4, "int32"))]


class Plain(keras.callbacks.Callback):
    def __init__(self, name):
        super().__init__()
        self.name = name

    def __repr__(self):
        return self.name


class Producer(Plain):
    def pop_reports(self):
        return []


def test_find_outside_any_list_is_none():
    callback = Plain("alone")
    holder = [callback]  # a plain list is not a CallbackList
    assert siblings.find(callback) is None
    assert siblings.callback_list_of(callback) is None
    assert holder


def test_find_in_a_callback_list_and_through_a_wrapper():
    runner = InferenceRunner(VAL, ScalarStats("loss"))
    wrapped = InferenceRunner(VAL, ScalarStats("loss"))
    trigger = PeriodicTrigger(wrapped, every_k_epochs=2)
    cbs = keras.callbacks.CallbackList([Plain("a"), runner, trigger])
    assert siblings.find(runner) == (cbs, runner)
    assert siblings.find(wrapped) == (cbs, trigger)  # the member that stands for it
    assert siblings.callback_list_of(wrapped) is cbs


def test_find_prefers_the_list_still_in_use():
    runner = InferenceRunner(VAL, ScalarStats("loss"))
    old = keras.callbacks.CallbackList([runner])
    del old  # an earlier fit's list, waiting for the collector
    current = keras.callbacks.CallbackList([Plain("x"), runner])
    assert siblings.find(runner)[0] is current


def test_is_producer_looks_through_wrappers():
    assert siblings.is_producer(InferenceRunner(VAL, ScalarStats("loss")))
    assert siblings.is_producer(PeriodicTrigger(Producer("p"), every_k_epochs=1))
    assert not siblings.is_producer(PeriodicTrigger(Plain("q"), every_k_epochs=1))
    assert not siblings.is_producer(keras.callbacks.EarlyStopping())


@pytest.mark.parametrize("order, members, expected", [
    ("a b P c R", "R", "R a b P c"),  # ahead of every non-producer
    ("a b P c R", "P R", "P R a b c"),  # each producer in turn (on_train_begin order): their order kept
    ("P Q a R", "R", "P Q R a"),  # after the leading producers
    ("R a b", "R", "R a b"),  # already first
    ("P R a", "R", "P R a"),
    ("a b", "z", "a b"),  # not in the list: nothing moves
])
def test_promote(order, members, expected):
    made = {n: (Producer(n) if n.isupper() else Plain(n)) for n in order.split() + members.split()}
    cbs = keras.callbacks.CallbackList([made[n] for n in order.split()])
    for member in members.split():
        siblings.promote(cbs, made[member])
    assert " ".join(repr(c) for c in cbs.callbacks) == expected


@pytest.mark.parametrize("keras_version", [KERAS])
def test_fit_callback_list_is_found_on_this_keras(keras_version):
    # Inside fit, on_train_begin finds fit's own CallbackList (with History in
    # it) and the runner moves ahead of the user's callbacks.
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["list"] = siblings.callback_list_of(self)

        def on_epoch_end(self, epoch, logs=None):
            seen["order"] = [type(c).__name__ for c in seen["list"].callbacks]

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    probe, runner = Probe(), InferenceRunner(VAL, ScalarStats("loss"))
    train = tf.data.Dataset.from_tensor_slices((np.zeros((4, 3), "float32"), np.zeros(4, "int32"))).batch(2)
    model.fit(train, epochs=1, verbose=0, callbacks=[probe, runner])
    found = seen["list"]
    assert isinstance(found, keras.callbacks.CallbackList), (
        f"siblings.find no longer finds fit's CallbackList on {keras_version}")
    assert any(isinstance(c, keras.callbacks.History) for c in found.callbacks), keras_version
    assert seen["order"][:2] == ["InferenceRunner", "Probe"], (keras_version, seen["order"])
