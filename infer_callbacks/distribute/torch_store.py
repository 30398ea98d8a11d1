"""A ``torch.distributed`` store as the wire of validation across processes.

``distribute/jax_processes.Channel`` needs four operations of a key-value
store: set bytes, a blocking get with a deadline, an atomic increment, a
delete. JAX's coordination service has them; so has the store of
``torch.distributed`` (a ``TCPStore``, which ``init_process_group`` creates
from ``MASTER_ADDR``/``MASTER_PORT``, run by rank 0). :class:`TorchStore`
gives such a store JAX's client's interface, so the same messages, deadlines
and errors serve a PyTorch engine (see the closing note of issue 26 in
``docs/devices.md``: the engine itself is what PyTorch still lacks here).

Example (one process, two connections):

>>> import datetime, torch.distributed as dist
>>> server = dist.TCPStore("127.0.0.1", 0, 2, True, timeout=datetime.timedelta(seconds=5),
...                        wait_for_workers=False)
>>> store = TorchStore(dist.TCPStore("127.0.0.1", server.port, 2, False))
>>> store.key_value_set_bytes("k", b"v"); store.blocking_key_value_get_bytes("k", 1000)
b'v'
"""

from __future__ import annotations

import datetime
from typing import Any

__all__ = ["TorchStore"]


class TorchStore:
    """``store`` (a ``torch.distributed.Store``) with the interface
    :class:`~infer_callbacks.distribute.jax_processes.Channel` reads.

    A timed-out get raises ``RuntimeError("DEADLINE_EXCEEDED ...")``, as
    JAX's client does, so the channel names the process that did not answer.
    """

    def __init__(self, store: Any):
        self._store = store

    def key_value_set_bytes(self, key: str, value: bytes, allow_overwrite: bool = False) -> None:
        self._store.set(key, value)

    def blocking_key_value_get_bytes(self, key: str, timeout_in_ms: int) -> bytes:
        import torch.distributed as dist
        before = self._store.timeout
        self._store.set_timeout(datetime.timedelta(milliseconds=timeout_in_ms))
        try:
            return self._store.get(key)
        except dist.DistStoreError as e:
            if "timeout" in str(e).lower():
                raise RuntimeError(f"DEADLINE_EXCEEDED: {e}") from None
            raise
        finally:
            self._store.set_timeout(before)

    def key_value_increment(self, key: str, increment: int) -> int:
        return int(self._store.add(key, increment))

    def key_value_delete(self, key: str) -> None:
        self._store.delete_key(key)
