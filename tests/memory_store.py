"""An in-memory key-value store with the interface of JAX's coordination
service client (what ``distribute/jax_processes.Channel`` uses), for tests
of validation across processes without starting processes."""

from __future__ import annotations

import threading


class MemoryStore:
    """JAX's coordination-service client, in memory (timeouts raise as JAX's do)."""

    def __init__(self):
        self.values: dict = {}
        self.changed = threading.Condition()

    def key_value_set_bytes(self, key, value, allow_overwrite=False):
        with self.changed:
            assert key not in self.values, key
            self.values[key] = bytes(value)
            self.changed.notify_all()

    def blocking_key_value_get_bytes(self, key, timeout_in_ms):
        with self.changed:
            if not self.changed.wait_for(lambda: key in self.values, timeout_in_ms / 1000):
                raise RuntimeError(f"DEADLINE_EXCEEDED: GetKeyValue() timed out with key: {key}")
            return self.values[key]

    def key_value_increment(self, key, increment):
        with self.changed:
            self.values[key] = int(self.values.get(key, 0)) + increment
            return self.values[key]

    def key_value_delete(self, key):
        with self.changed:
            self.values.pop(key, None)
