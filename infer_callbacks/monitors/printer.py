"""``ScalarPrinter``: a table of each epoch's values on stdout."""

from __future__ import annotations

import sys
from typing import Any, Sequence

from infer_callbacks.monitors.writer import MonitorWriter
from infer_callbacks.fit.set_keys import split_set_key

__all__ = ["ScalarPrinter"]


class ScalarPrinter(MonitorWriter):
    """Prints the epoch's values as a table (tabulate).

    With ``fit(verbose=1)`` or ``verbose=2`` Keras already prints every key of
    the epoch's ``logs`` at the end of the epoch. The printer then shows only
    the other values (e.g. :class:`~infer_callbacks.ConfusionMatrix`'s
    per-class numbers, which go to the monitors but not into ``logs``, and
    results an asynchronous runner reports for an earlier epoch), on lines of
    their own after Keras's progress bar; nothing when nothing is left. With
    ``verbose=0`` (or outside ``fit``) it prints everything. With several
    named validation sets, each set's values get a column of their own (the
    unnamed and combined values stay in the first).

    Args:
        whitelist: print only these keys (default: all).
        blacklist: never print these keys.
        file: where to print (default: ``sys.stdout`` at write time).
        repeat_keras_logs: also print the keys Keras's progress output shows.

    Example:

    ```python
    from infer_callbacks import ScalarPrinter

    print(ScalarPrinter().format(3, 120, {"validation_loss": 0.25, "loss": 0.5}))
    ```
    """

    console = True

    def __init__(self, whitelist: Sequence[str] | None = None, blacklist: Sequence[str] = (), *,
                 file: Any = None, repeat_keras_logs: bool = False):
        if isinstance(whitelist, str) or isinstance(blacklist, str):
            raise TypeError(
                "ScalarPrinter's whitelist and blacklist are lists of keys. Received: "
                f"whitelist={whitelist!r}, blacklist={blacklist!r}")
        self.whitelist = None if whitelist is None else set(whitelist)
        self.blacklist = set(blacklist)
        self.file = file
        self.repeat_keras_logs = repeat_keras_logs
        self.sets: list[str] = []

    def use_sets(self, names: list[str]) -> None:
        self.sets = list(names)

    def _shown(self, scalars: dict[str, float]) -> list[tuple[str, float]]:
        return [(k, v) for k, v in sorted(scalars.items())
                if (self.whitelist is None or k in self.whitelist) and k not in self.blacklist]

    def format(self, epoch_num: int, step: int, scalars: dict[str, float]) -> str:
        """The table :meth:`write` prints."""
        from tabulate import tabulate

        shown = self._shown(scalars)
        headers = [f"epoch {epoch_num}", f"step {step}"]
        grouped = {k: split_set_key(k, self.sets) for k, _ in shown} if self.sets else {}
        if not any(grouped.values()):
            rows = [[k, f"{v:.6g}"] for k, v in shown]
            return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
        table: dict[str, dict] = {}
        for k, v in shown:
            base, column = grouped[k] or (k, "")
            table.setdefault(base, {})[column] = f"{v:.6g}"
        columns = [""] + [n for n in self.sets if any(n in row for row in table.values())]
        rows = [[base] + [row.get(c, "") for c in columns] for base, row in sorted(table.items())]
        return tabulate(rows, headers=[f"epoch {epoch_num} step {step}", "value"] + columns[1:],
                        tablefmt="simple", disable_numparse=True)

    def write(self, epoch_num: int, step: int, scalars: dict[str, float]) -> None:
        if not self._shown(scalars):
            return
        print(self.format(epoch_num, step, scalars), file=self.file or sys.stdout, flush=True)
