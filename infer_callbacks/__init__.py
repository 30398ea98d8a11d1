"""In-loop evaluation for Keras 3 training: tensorpack's InferenceRunner
idea on Keras 3, tf.function and tf.distribute.

Every public name is imported here from the module that owns it; the
sub-packages (``data``, ``distribute``, ``towers``, ``inferencers``,
``runner``, ``monitors``, ``checkpoints``, ``predict``, ``sidecar``,
``trainer``) show the architecture, bottom to top.
"""

from infer_callbacks import stats
from infer_callbacks.checkpoints.model_saver import ModelSaver
from infer_callbacks.checkpoints.savers import MaxSaver, MinSaver
from infer_callbacks.data.dataflow import FeedInput, QueueInput
from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.inferencers.confusion import ConfusionMatrix
from infer_callbacks.inferencers.context import RunContext, TrainerHandle
from infer_callbacks.inferencers.gather import GatherOutputs
from infer_callbacks.inferencers.keras_metric import KerasMetric
from infer_callbacks.inferencers.scalar import BinaryClassificationStats, ClassificationError, ScalarStats
from infer_callbacks.inferencers.whole_set.auc import AUC
from infer_callbacks.inferencers.whole_set.coco import COCOMeanAP
from infer_callbacks.inferencers.whole_set.sliced import Sliced
from infer_callbacks.inferencers.whole_set.text import ROUGE, CorpusBLEU, ExactMatch, WordErrorRate
from infer_callbacks.monitors.callback import Monitors
from infer_callbacks.monitors.json_writer import JSONWriter
from infer_callbacks.monitors.printer import ScalarPrinter
from infer_callbacks.monitors.tf_events import TFEventWriter
from infer_callbacks.monitors.writer import MonitorWriter
from infer_callbacks.predict.config import PredictConfig
from infer_callbacks.predict.export import ModelExporter
from infer_callbacks.predict.predictor import OfflinePredictor
from infer_callbacks.runner.data_parallel import DataParallelInferenceRunner
from infer_callbacks.runner.inference_runner import InferenceRunner
from infer_callbacks.fit.keras_glue import ordered_callbacks
from infer_callbacks.runner.objective import Objective
from infer_callbacks.runner.trigger import PeriodicTrigger
from infer_callbacks.sidecar.evaluator import SidecarEvaluator
from infer_callbacks.towers.model_desc import ModelDesc
from infer_callbacks.towers.spec import TowerContext, get_current_tower_context
from infer_callbacks.trainer.config import TrainConfig
from infer_callbacks.trainer.tensorpack_callback import Callback
from infer_callbacks.trainer.trainers import (
    DistributedTrainer,
    SimpleTrainer,
    SyncMultiGPUTrainer,
    launch_train_with_config,
)

__version__ = "0.1.0"

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
    "Objective",
    "Callback",
    "ordered_callbacks",
    "Inferencer",
    "ScalarStats",
    "ClassificationError",
    "BinaryClassificationStats",
    "KerasMetric",
    "GatherOutputs",
    "ConfusionMatrix",
    "AUC",
    "CorpusBLEU",
    "ROUGE",
    "WordErrorRate",
    "ExactMatch",
    "COCOMeanAP",
    "Sliced",
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
