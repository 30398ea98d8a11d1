"""Whether a model's optimizer keeps an exponential moving average of the
weights that it has not updated yet.

Keras's ``SwapEMAWeights`` swaps the optimizer's averages into the model in
``on_test_begin`` (and back in ``on_test_end``), which the runner fires
around each run as ``fit`` does for ``validation_data``. Before the
optimizer's first step there is no average to swap in: on TensorFlow the
optimizer is not built yet (``SwapEMAWeights`` raises), on JAX its averages
are zeros (the run would measure a model of zeros). Keras's first EMA
update copies the weights, so until then the model's own weights *are* the
average: the runner validates them and does not fire ``on_test_begin`` /
``on_test_end`` (nor the batch hooks) around that run, on the synchronous
and the asynchronous path alike (Lightning#21724 is the same fault).
"""

from __future__ import annotations

from typing import Any

from infer_callbacks._util import global_step

__all__ = ["ema_pending"]


def ema_pending(model: Any) -> bool:
    """Whether ``model``'s optimizer has ``use_ema=True`` and has made no
    step (so no EMA update) yet.

    Example:

    ```python
    import keras
    from infer_callbacks.runner.ema import ema_pending

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(use_ema=True), loss="mse")
    assert ema_pending(model)
    ```
    """
    optimizer = getattr(model, "optimizer", None)
    if not getattr(optimizer, "use_ema", False):
        return False
    return global_step(model) == 0
