"""Messages between the processes of a JAX job, with a deadline on every wait.

Under ``keras.distribution.initialize(...)`` (JAX's distributed runtime),
validation runs on every process and its results are combined on the host.
This module is the wire: each process writes an ordered **stream** of
messages (:class:`Message`: a kind, a small JSON header, numpy arrays) into
the key-value store of JAX's coordination service, and reads the other
processes' streams in order. Every read waits at most ``timeout`` seconds,
so no process ever waits forever; an error names the process and the cause:

| what happened | what the reader raises |
| --- | --- |
| the other process raised (its stream ends with an ``error`` message) | :class:`ProcessError` "process 1 raised ValueError(...)" |
| nothing arrived within ``timeout`` (a process stuck, killed, or on another path) | :class:`ProcessError` "process 1 did not answer within 30 s (...)" |
| the coordination service is gone (process 0 ended) | :class:`ProcessError` naming process 0 and JAX's message |

Why JAX's private ``jax._src.distributed.global_state.client``: JAX's public
multi-process helpers (``jax.experimental.multihost_utils.process_allgather``,
``sync_global_devices``) are device collectives with no deadline: a process
that never arrives makes the others wait forever, which is what this module
must rule out. The coordination service's key-value store has blocking gets
with timeouts; JAX exposes it publicly only through that client. It is used
in :func:`_client` only.

A message is read by every other process; the last reader deletes it
(``key_value_increment`` counts the readers), so the store holds only what
some process has yet to read. Bytes sent are counted (:attr:`Channel.bytes_sent`).
"""

from __future__ import annotations

import dataclasses
import json
import struct
import sys
from typing import Any

import numpy as np

__all__ = ["Channel", "Message", "ProcessError", "jax_process", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 60.0  # seconds; below JAX's heartbeat timeout (100 s), after which JAX aborts the survivors
_PART = 1 << 20  # bytes per stored value (the service's messages stay small)
_HEAD = struct.Struct("<Q")


class ProcessError(RuntimeError):
    """Another process of the JAX job failed, or did not answer in time."""


def jax_process() -> tuple[int, int] | None:
    """``(process index, process count)`` under Keras's JAX backend with
    several JAX processes, else ``None`` (JAX is not imported for others)."""
    if "jax" not in sys.modules:
        return None
    import keras
    if keras.backend.backend() != "jax":
        return None
    import jax
    count = jax.process_count()
    return (jax.process_index(), count) if count > 1 else None


def _client():
    from jax._src.distributed import global_state  # the only private use; see the module docstring
    if global_state.client is None:
        raise RuntimeError("Validation across JAX processes needs JAX's distributed runtime; call "
                           "keras.distribution.initialize(...) (or jax.distributed.initialize) first.")
    return global_state.client


@dataclasses.dataclass
class Message:
    """One message: ``kind`` (``'chunk'``, ``'end'``, ``'state'``, ``'result'``,
    ``'error'``), a JSON-able ``meta`` dict, and named numpy ``arrays``."""

    kind: str
    meta: dict = dataclasses.field(default_factory=dict)
    arrays: dict = dataclasses.field(default_factory=dict)

    def encode(self) -> bytes:
        """Header length, JSON header, then each array's raw bytes (no pickle)."""
        arrays = {k: np.ascontiguousarray(v) for k, v in self.arrays.items()}
        layout = [[k, a.dtype.str, list(a.shape)] for k, a in arrays.items()]
        head = json.dumps({"kind": self.kind, "meta": self.meta, "arrays": layout}).encode()
        return b"".join([_HEAD.pack(len(head)), head] + [a.tobytes() for a in arrays.values()])

    @classmethod
    def decode(cls, data: bytes) -> "Message":
        (n,) = _HEAD.unpack_from(data)
        head = json.loads(data[_HEAD.size:_HEAD.size + n])
        offset, arrays = _HEAD.size + n, {}
        for name, dtype, shape in head["arrays"]:
            dt = np.dtype(dtype)
            size = int(np.prod(shape)) * dt.itemsize
            arrays[name] = np.frombuffer(data, dt, count=size // dt.itemsize if dt.itemsize else 0,
                                         offset=offset).reshape(shape)
            offset += size
        return cls(head["kind"], head["meta"], arrays)


class Channel:
    """This process's stream and its reads of the others', for one pass.

    Args:
        name: the pass's unique name (the same on every process).
        timeout: the most seconds any read waits.
        process: ``(index, count)`` (default: JAX's).
        client: the key-value store (default: JAX's coordination service
            client); anything with its ``key_value_set_bytes``,
            ``blocking_key_value_get_bytes``, ``key_value_increment`` and
            ``key_value_delete`` (tests pass an in-memory one).
    """

    def __init__(self, name: str, timeout: float = DEFAULT_TIMEOUT, process: tuple[int, int] | None = None,
                 client: Any = None):
        if not timeout or timeout <= 0:
            raise ValueError(f"`collective_timeout` must be a positive number of seconds. Received: {timeout!r}")
        self.index, self.count = process or jax_process() or (0, 1)
        self.name, self.timeout = name, float(timeout)
        self._client = client if client is not None else _client()
        self._sent = 0
        self._read = [0] * self.count
        self.bytes_sent = 0
        self.failed = False

    def _key(self, process: int, seq: int) -> str:
        return f"infer_callbacks/{self.name}/{process}/{seq}"

    def send(self, message: Message) -> None:
        """Append ``message`` to this process's stream."""
        data = message.encode()
        key = self._key(self.index, self._sent)
        self._sent += 1
        parts = [data[i:i + _PART] for i in range(0, len(data), _PART)] or [b""]
        for i, part in enumerate(parts[1:], 1):
            self._client.key_value_set_bytes(f"{key}.{i}", part)
        self._client.key_value_set_bytes(key, struct.pack("<I", len(parts)) + parts[0])
        self.bytes_sent += len(data)

    def fail(self, error: BaseException) -> None:
        """Tell the others this process failed (once; best effort: the
        service may itself be gone)."""
        if self.failed:
            return
        self.failed = True
        cause = str(error) if isinstance(error, ProcessError) else f"{type(error).__name__}({error})"
        try:
            self.send(Message("error", {"cause": cause[:4000]}))
        except Exception:  # noqa: BLE001 - the others then time out, naming this process
            pass

    def receive(self, process: int, what: str) -> Message:
        """The next message of ``process``'s stream (``what``: what it is
        awaited for, for the error message).

        Raises:
            ProcessError: ``process`` failed, sent nothing within the
                timeout, or the coordination service is unreachable.
        """
        key = self._key(process, self._read[process])
        first = self._get(key, process, what)
        (parts,) = struct.unpack_from("<I", first)
        data = first[4:] + b"".join(self._get(f"{key}.{i}", process, what) for i in range(1, parts))
        self._read[process] += 1
        self._release(key, parts)
        message = Message.decode(data)
        if message.kind == "error":
            raise ProcessError(f"process {process} of {self.count} failed during validation ({what}): "
                               f"{message.meta.get('cause')}")
        return message

    def _get(self, key: str, process: int, what: str) -> bytes:
        try:
            return self._client.blocking_key_value_get_bytes(key, int(self.timeout * 1000))
        except Exception as e:  # JAX's runtime error: deadline, or the service is gone
            text = str(e)
            if "DEADLINE_EXCEEDED" in text:
                raise ProcessError(
                    f"process {process} of {self.count} did not answer within {self.timeout:g} s "
                    f"(process {self.index} was waiting for {what}). It may be stuck, killed, or running "
                    "another number of validation batches; raise `collective_timeout` if it is only "
                    "slow.") from None
            raise ProcessError(f"process {self.index} lost JAX's coordination service (run by process 0) "
                               f"while waiting for {what} of process {process}: {text[:500]}") from None

    def _release(self, key: str, parts: int) -> None:
        """Count this read; the last of the ``count - 1`` readers deletes the message."""
        try:
            if self._client.key_value_increment(f"{key}.reads", 1) < self.count - 1:
                return
            for k in [key, f"{key}.reads"] + [f"{key}.{i}" for i in range(1, parts)]:
                self._client.key_value_delete(k)
        except Exception:  # noqa: BLE001 - cleanup only; a lost service surfaces at the next read
            pass
