"""ModelDesc's Keras face, DescModel: its inference tower takes the
ModelDesc's inputs by name and computes the cost in inference mode (numpy
on the same weights)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from test_trainer import W0, XV, YV, Linear, ce_and_logits


def test_inference_tower_of_a_model_desc():
    from infer_callbacks import get_current_tower_context
    from infer_callbacks.towers.model_desc import DescModel

    desc = Linear()
    model = DescModel(desc)
    tower = model.inference_tower()
    assert tower.input_names == ["x", "label"]
    assert list(__import__("inspect").signature(tower).parameters) == ["x", "label"]
    out = tower(tf.constant(XV), tf.constant(YV))
    assert desc.modes == [False] and get_current_tower_context() is None
    ce, _ = ce_and_logits(W0, np.zeros(10), XV, YV)
    np.testing.assert_allclose(out["cost"].numpy(), ce.mean(), rtol=1e-5)
