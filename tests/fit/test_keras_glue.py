"""keras_glue: the run of the CallbackList that hands a callback its model,
and moving validation producers ahead of the others. This is the one place
that depends on how Keras's ``fit`` keeps its callbacks; the tests carry the
installed Keras version in their ids so a Keras upgrade that breaks it says
so."""

from __future__ import annotations

import gc
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import InferenceRunner, Monitors, PeriodicTrigger, ScalarPrinter, ScalarStats
from infer_callbacks import ordered_callbacks
from infer_callbacks.fit import keras_glue

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


class Joiner(Plain):
    """A callback that joins its run, as every callback of the package does."""

    run = None

    def set_model(self, model):
        super().set_model(model)
        self.run = keras_glue.join(self)


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_join_outside_any_list_is_none():
    callback = Joiner("alone")
    callback.set_model(_model())  # driven by hand: no CallbackList calls
    assert callback.run is None


def test_join_in_a_callback_list_and_through_a_wrapper():
    model = _model()
    direct, wrapped = Joiner("direct"), Joiner("wrapped")
    trigger = PeriodicTrigger(wrapped, every_k_epochs=2)
    cbs = keras.callbacks.CallbackList([Plain("a"), direct, trigger], model=model)
    assert direct.run is not None and direct.run is wrapped.run
    assert direct.run.callback_list is cbs
    assert direct.run.members() == cbs.callbacks[:2] + [trigger, wrapped]


def test_each_list_has_its_own_run_whatever_else_is_alive():
    model = _model()
    joiner = Joiner("j")
    old = keras.callbacks.CallbackList([joiner], model=model)  # an earlier fit's list, still alive
    first = joiner.run
    current = keras.callbacks.CallbackList([Plain("x"), joiner], model=model)
    assert joiner.run is not first and joiner.run.callback_list is current
    assert first.callback_list is old


def test_a_finished_lists_run_goes_with_it():
    joiner = Joiner("j")
    keras.callbacks.CallbackList([joiner], model=_model())
    run = joiner.run
    gc.collect()
    assert run.callback_list is None  # the list is gone: the run holds it weakly
    assert run.members() == [] and run.producers() == []
    run.fire("on_test_begin")  # a no-op, not an error


def test_a_list_that_does_not_hold_the_callback_is_not_joined():
    class Forwarder(keras.callbacks.CallbackList):
        pass

    joiner = Joiner("j")
    cbs = Forwarder([Plain("a")])
    cbs.set_model(_model())
    joiner.set_model(cbs.model)
    assert joiner.run is None


def test_is_producer_looks_through_wrappers():
    assert keras_glue.is_producer(InferenceRunner(VAL, ScalarStats("loss")))
    assert keras_glue.is_producer(PeriodicTrigger(Producer("p"), every_k_epochs=1))
    assert not keras_glue.is_producer(PeriodicTrigger(Plain("q"), every_k_epochs=1))
    assert not keras_glue.is_producer(keras.callbacks.EarlyStopping())


def test_ordered_callbacks_puts_producers_first_in_their_order():
    a, p, b, q = Plain("a"), Producer("P"), Plain("b"), PeriodicTrigger(Producer("Q"), every_k_epochs=1)
    assert ordered_callbacks([a, p, b, q]) == [p, q, a, b]
    with pytest.raises(TypeError, match="keras.callbacks.Callback"):
        ordered_callbacks([a, "not a callback"])


@pytest.mark.parametrize("order, members, expected", [
    ("a b P c R", "R", "R a b P c"),  # ahead of every non-producer
    ("a b P c R", "P R", "P R a b c"),  # each producer in turn (on_train_begin order): their order kept
    ("P Q a R", "R", "P Q R a"),  # after the leading producers
    ("R a b", "R", "R a b"),  # already first
    ("P R a", "R", "P R a"),
])
def test_promote(order, members, expected):
    made = {n: (Producer(n) if n.isupper() else Plain(n)) for n in order.split() + members.split()}
    cbs = keras.callbacks.CallbackList([made[n] for n in order.split()])
    run = keras_glue.Run(cbs)
    for member in members.split():
        assert run.promote(made[member])
    assert " ".join(repr(c) for c in cbs.callbacks) == expected


def test_promote_of_a_callback_not_in_the_list_moves_nothing():
    cbs = keras.callbacks.CallbackList([Plain("a"), Plain("b")])
    assert not keras_glue.Run(cbs).promote(Producer("z"))
    assert [repr(c) for c in cbs.callbacks] == ["a", "b"]


def test_runner_and_monitors_driven_by_hand_warn_once_naming_what_is_missing():
    model = _model()
    runner, monitors = InferenceRunner(VAL, ScalarStats("loss"), verbose=False), Monitors([ScalarPrinter()])
    for cb in (runner, monitors):
        cb.set_model(model)
    with pytest.warns(RuntimeWarning, match="miss its results in on_epoch_end.*put the runners first"):
        runner.on_train_begin()
    with pytest.warns(RuntimeWarning, match="no runner's images"):
        monitors.on_train_begin()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per callback
        runner.on_train_begin()
    monitors.on_train_end()


@pytest.mark.parametrize("keras_version", [KERAS])
def test_fit_callback_list_is_joined_on_this_keras(keras_version):
    # Inside fit, set_model joins fit's own CallbackList (with History in it)
    # and the runner moves ahead of the user's callbacks.
    seen = {}

    class Probe(Joiner):
        def on_epoch_end(self, epoch, logs=None):
            seen["order"] = [type(c).__name__ for c in self.run.callback_list.callbacks]
            seen["history"] = any(isinstance(c, keras.callbacks.History) for c in self.run.callback_list.callbacks)
            seen["logs"] = dict(logs)

    keras.utils.set_random_seed(0)
    model = _model()
    probe, runner = Probe("probe"), InferenceRunner(VAL, ScalarStats("loss"))
    train = tf.data.Dataset.from_tensor_slices((np.zeros((4, 3), "float32"), np.zeros(4, "int32"))).batch(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model.fit(train, epochs=1, verbose=0, callbacks=[probe, runner])
    assert probe.run is not None, f"keras_glue.join no longer finds fit's CallbackList on {keras_version}"
    assert seen["history"], keras_version
    assert seen["order"][:2] == ["InferenceRunner", "Probe"], (keras_version, seen["order"])
    assert "validation_loss" in seen["logs"]


def test_an_explicit_callback_list_passed_to_fit_is_joined():
    model = _model()
    seen = []

    class Swap(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            seen.append("test_begin")

        def on_epoch_end(self, epoch, logs=None):
            seen.append(sorted(logs))

    runner = InferenceRunner(VAL, ScalarStats("loss"))
    cbs = keras.callbacks.CallbackList(ordered_callbacks([Swap(), runner]), add_history=True, model=model)
    x, y = np.zeros((4, 3), "float32"), np.zeros(4, "int32")
    model.fit(x, y, epochs=1, verbose=0, callbacks=cbs)
    assert seen[0] == "test_begin" and "validation_loss" in seen[1]


def test_subclasses_that_extend_set_model_are_joined_in_fit():
    """A tensorpack habit: subclass a runner (or Monitors, or a saver) and
    extend set_model. EarlyStopping placed first must still see its results."""
    seen = {}

    class MyRunner(InferenceRunner):
        def set_model(self, model):
            seen["set_model"] = True
            super().set_model(model)

    class MyMonitors(Monitors):
        def set_model(self, model):
            super().set_model(model)

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen["logs"] = sorted(logs)

    runner, monitors = MyRunner(VAL, ScalarStats("loss"), verbose=False), MyMonitors([ScalarPrinter()])
    x, y = np.zeros((4, 3), "float32"), np.zeros(4, "int32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "was not given its model" warning
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[Spy(), monitors, runner])
    assert seen["set_model"] and "validation_loss" in seen["logs"]


def test_wrappers_at_any_depth_and_subclassed_wrappers_are_joined():
    class MyTrigger(PeriodicTrigger):
        def set_model(self, model):
            super().set_model(model)

    inner = Joiner("inner")
    wrapped = inner
    for depth in range(5):
        wrapped = (MyTrigger if depth % 2 else PeriodicTrigger)(wrapped, every_k_epochs=1)
    cbs = keras.callbacks.CallbackList([Plain("a"), wrapped], model=_model())
    assert inner.run is not None and inner.run.callback_list is cbs


def test_a_subclass_driven_by_hand_still_warns():
    class MyRunner(InferenceRunner):
        def set_model(self, model):
            super().set_model(model)

    runner = MyRunner(VAL, ScalarStats("loss"), verbose=False)
    runner.set_model(_model())
    with pytest.warns(RuntimeWarning, match="was not given its model"):
        runner.on_train_begin()
