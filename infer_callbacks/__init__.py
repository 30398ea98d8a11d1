"""In-loop evaluation for TensorFlow 2 training: tensorpack's InferenceRunner
idea on Keras 3, tf.function and tf.distribute."""

from .export import ModelExporter
from . import stats
from .builtins import BinaryClassificationStats, ClassificationError, ScalarStats
from .context import RunContext, TrainerHandle
from .inferencer import Inferencer
from .input import FeedInput, QueueInput
from .confusion import ConfusionMatrix
from .gather import GatherOutputs
from .keras_metric import KerasMetric
from .monitors import JSONWriter, Monitors, MonitorWriter, ScalarPrinter, TFEventWriter
from .predict import OfflinePredictor, PredictConfig
from .data_parallel import DataParallelInferenceRunner
from .runner import InferenceRunner
from .savers import MaxSaver, MinSaver, ModelSaver
from .tower import TowerContext, get_current_tower_context
from .trainer import (
    DistributedTrainer,
    ModelDesc,
    SimpleTrainer,
    SyncMultiGPUTrainer,
    TrainConfig,
    launch_train_with_config,
)
from .trigger import PeriodicTrigger

__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use, so `python -m infer_callbacks.sidecar` does not
    # find its own module already imported by the package.
    if name == "SidecarEvaluator":
        from .sidecar import SidecarEvaluator

        return SidecarEvaluator
    raise AttributeError(f"module 'infer_callbacks' has no attribute {name!r}")

__all__ = [
    "stats",
    "RunContext",
    "TrainerHandle",
    "SidecarEvaluator",
    "QueueInput",
    "FeedInput",
    "InferenceRunner",
    "DataParallelInferenceRunner",
    "PeriodicTrigger",
    "Inferencer",
    "ScalarStats",
    "ClassificationError",
    "BinaryClassificationStats",
    "KerasMetric",
    "GatherOutputs",
    "ConfusionMatrix",
    "TowerContext",
    "get_current_tower_context",
    "Monitors",
    "MonitorWriter",
    "ScalarPrinter",
    "JSONWriter",
    "TFEventWriter",
    "PredictConfig",
    "OfflinePredictor",
    "ModelExporter",
    "ModelDesc",
    "TrainConfig",
    "launch_train_with_config",
    "SimpleTrainer",
    "SyncMultiGPUTrainer",
    "DistributedTrainer",
    "ModelSaver",
    "MinSaver",
    "MaxSaver",
]
