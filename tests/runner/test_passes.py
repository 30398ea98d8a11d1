"""Progress bars: drawn only when stderr is a terminal, unless asked
(``verbose=True``): a standalone ``trigger()`` or a sidecar whose stderr is
a log file gets no ``\\r`` fragments."""

from __future__ import annotations

import io
import types

import pytest

from infer_callbacks import InferenceRunner, ScalarStats
from infer_callbacks.runner.passes import progress_bars


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stderr, force, drawn", [
    (io.StringIO(), False, False),   # a log file: nothing
    (io.StringIO(), True, True),     # verbose=True: asked for
    (Terminal(), False, True),       # a terminal
])
def test_bars_only_on_a_terminal_unless_forced(monkeypatch, stderr, force, drawn):
    monkeypatch.setattr("sys.stderr", stderr)
    one_set = types.SimpleNamespace(input=types.SimpleNamespace(size=3), label="")
    with progress_bars("validation", False, force=force)(one_set) as bar:
        bar.update(3)
    assert ("\r" in stderr.getvalue()) == drawn


def test_verbose_is_checked():
    with pytest.raises(ValueError, match="verbose='yes'"):
        InferenceRunner([(1, 2)], ScalarStats("loss"), verbose="yes")
    assert InferenceRunner([(1, 2)], ScalarStats("loss")).verbose == "auto"
