"""copy_callback: a deep copy that shares the user's input, makes the run
state anew (Keras's model and params included) and keeps one copy of what
two attributes share."""

from __future__ import annotations

import copy
import threading

import keras

from infer_callbacks._util.copying import copy_callback


class Probe(keras.callbacks.Callback):
    def __init__(self, source):
        super().__init__()
        self.source, self.config = source, {"k": [1, 2]}
        self.alias = self.config            # two names for one object
        self.seen, self.lock = [3], threading.Lock()

    def __deepcopy__(self, memo):
        return copy_callback(self, memo, share=("source",), fresh={"seen": list, "lock": threading.Lock})


def test_shares_the_input_copies_the_config_and_starts_the_run_afresh():
    data = object()
    probe = Probe(data)
    probe.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    probe.set_params({"epochs": 3})
    clone = copy.deepcopy(probe)
    assert clone.source is data                                      # shared
    assert clone.config == probe.config and clone.config is not probe.config
    assert clone.alias is clone.config                                # one copy of a shared object
    assert clone.seen == [] and clone.lock is not probe.lock          # fresh run state
    assert clone.model is None and clone.params is None               # no model, no params
    assert probe.seen == [3] and probe.params == {"epochs": 3}        # the original is untouched


def test_a_run_state_attribute_the_object_lacks_stays_unset():
    class Partial:
        def __init__(self):
            self.value = 1

        def __deepcopy__(self, memo):
            return copy_callback(self, memo, fresh={"missing": list})

    clone = copy.deepcopy(Partial())
    assert clone.value == 1 and not hasattr(clone, "missing")
