"""The PyTorch engine's step: several batches per call, each run as its own
batch, eagerly and without autograd, on one device or whole batches per device.

A call gets ``count`` batches of one shape stacked ``[count, ...]``
(``host_blocks.Blocks``); batch ``j`` goes to device ``j % R`` (tensorpack's
data-parallel semantics), as a ``torch.from_numpy`` view of its slice of the
block (a block ``tf.data`` made is read-only, so it is copied once first:
torch tensors are writable). Each batch is computed alone -- no
concatenation, no ``torch.func.vmap`` -- so its outputs are exactly those of
that batch run by itself, whatever the call size or the device count.
The outputs come back as numpy (a CPU tensor's ``.numpy()`` is a view) and
are stacked ``[count, ...]`` per name into a
:class:`~infer_callbacks.runner.engine.host_chunk.JaxChunk`, in dataset order.

On CUDA devices a round launches one batch on each device before any is
copied back, so the devices compute side by side (not run here: this
project's machines have no GPU).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from infer_callbacks.runner.engine.host_blocks import block_signature
from infer_callbacks.runner.engine.host_chunk import JaxChunk

__all__ = ["TorchStep", "to_numpy"]


def to_numpy(value: Any) -> np.ndarray:
    """A tower output on the host as numpy (``bfloat16`` as ``float32``)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.device.type != "cpu":
            value = value.cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _rows(leaves: Sequence[np.ndarray]) -> int:
    for leaf in leaves:
        if leaf.ndim >= 2:
            return int(leaf.shape[1])
    return -1


class TorchStep:
    """Runs ``tower`` on the batches of a block.

    Args:
        tower: a :class:`~infer_callbacks.runner.engine.torch.tower.TorchTower`.
        devices: the ``torch.device`` of each replica (``[None]``: the
            model's own device, Keras's default placement).
        ranks: each output's rank per batch (``0``: a scalar per batch).

    Attributes:
        signatures: the batch signatures (shapes, dtypes) the step has run.
    """

    def __init__(self, tower, devices: Sequence[torch.device | None], ranks: dict[str, int] | None = None):
        self.tower = tower
        self.devices = list(devices)
        self.ranks = dict(ranks or {})
        self.per_round = len(self.devices)  # batches per round: one per device
        self.signatures: set = set()
        # keras.device() names: the tower's new tensors go to its replica's device.
        self._scopes = [None if d is None else str(d) for d in self.devices]

    def _tensor(self, leaf: np.ndarray, device: torch.device | None) -> torch.Tensor:
        tensor = torch.from_numpy(leaf)
        return tensor if device is None or device.type == "cpu" else tensor.to(device, non_blocking=True)

    def outputs(self, states: Sequence, batch_leaves: Sequence[np.ndarray], pack: Callable, i: int = 0) -> dict:
        """Replica ``i``'s tower outputs (torch) on one batch given as numpy leaves."""
        batch = pack([self._tensor(leaf, self.devices[i]) for leaf in batch_leaves])
        with torch.no_grad():
            return self.tower(states[i], batch, self._scopes[i])

    def run(self, states: Sequence, leaves: tuple, count: int, pack: Callable) -> tuple[JaxChunk, int]:
        """The outputs of ``count`` batches stacked ``[count, ...]`` in
        ``leaves`` (``states[i]``: the values replica ``i`` reads, ``None``
        for the variables themselves; ``pack(leaves)`` makes the input's
        structure), as a :class:`JaxChunk`, and the bytes it moved."""
        leaves = tuple(np.require(leaf, requirements="W") for leaf in leaves)  # tf.data's are read-only
        self.signatures.add(block_signature(leaves))
        r, nbytes = len(self.devices), sum(leaf[:count].nbytes for leaf in leaves)
        per_name: dict[str, list] = {}

        def keep(out: dict) -> None:
            for name, value in out.items():
                per_name.setdefault(name, []).append(to_numpy(value))

        with torch.no_grad():
            if r == 1:  # one scope for the whole call
                with self.tower.scope(states[0], self._scopes[0]):
                    for j in range(count):
                        keep(self.tower.run(pack([self._tensor(leaf[j], self.devices[0]) for leaf in leaves])))
            else:
                for start in range(0, count, r):
                    launched = [self.outputs(states, [leaf[j] for leaf in leaves], pack, j - start)
                                for j in range(start, min(start + r, count))]
                    for out in launched:  # every device of the round computes before any copy back
                        keep(out)
        values = {}
        for name, outs in per_name.items():
            try:
                values[name] = np.stack(outs)
            except ValueError:
                shapes = sorted({o.shape for o in outs})
                raise ValueError(f"The tower's output {name!r} has different shapes {shapes} for batches "
                                 "of the same input shapes; under PyTorch a tower's output shapes must "
                                 "follow from its input shapes.") from None
            nbytes += values[name].nbytes
        return JaxChunk(values, np.full(count, _rows(leaves), np.int64), self.ranks), nbytes
