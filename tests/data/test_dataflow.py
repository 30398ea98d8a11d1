"""tensorpack's QueueInput / FeedInput wrappers: a label around a DataFlow or
a dataset, refused around anything else (what they feed is tested in
test_source.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from infer_callbacks import FeedInput, QueueInput


@pytest.mark.parametrize("wrapper", [QueueInput, FeedInput])
def test_wraps_dataflows_and_datasets_and_ignores_tensorpack_arguments(wrapper):
    flow = [(np.zeros((2, 3), "float32"),)]
    wrapped = wrapper(flow, queue=None)
    assert wrapped.dataflow is flow and wrapped.ds is flow
    assert wrapper(wrapped).dataflow is flow                    # a wrapper of a wrapper: the same DataFlow
    ds = tf.data.Dataset.from_tensor_slices(np.zeros((4, 3), "float32")).batch(2)
    assert wrapper(ds).dataflow is ds
    assert repr(wrapped).startswith(wrapper.__name__ + "(")


@pytest.mark.parametrize("bad", [np.zeros(3), "data", 42])
def test_anything_else_is_refused_naming_it(bad):
    with pytest.raises(TypeError, match="wraps a DataFlow"):
        QueueInput(bad)
