"""tensorpack's statistics counters (``StatCounter``, ``RatioCounter``,
``Accuracy``, ``BinaryStatistics``), kept at ``infer_callbacks.stats`` where
tensorpack code imports them from; they live in
:mod:`infer_callbacks.inferencers.stats`."""

from infer_callbacks.inferencers.stats import *  # noqa: F401,F403
from infer_callbacks.inferencers.stats import __all__  # noqa: F401
