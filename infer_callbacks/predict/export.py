"""Exporting a trained model: SavedModel for serving, a frozen GraphDef, TFLite.

All three formats are made from the same traced function as the
:class:`~infer_callbacks.OfflinePredictor` of the :class:`~infer_callbacks.PredictConfig`,
so they take the same named inputs and return the same named outputs (batch
dimension ``None``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Any

import tensorflow as tf

from infer_callbacks._util import atomic_write_bytes, umask, require_tensorflow
from infer_callbacks.predict.predictor import OfflinePredictor, PredictConfig

__all__ = ["ModelExporter"]

# TensorFlow's rule for op names (tensorflow/core/framework/node_def_util.cc).
_OP_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/>]*$")


def _refuse_existing(path: str, overwrite: bool, what: str) -> None:
    if not os.path.exists(path):
        return
    if os.path.isdir(path) and what == "directory":
        if os.listdir(path) and not overwrite:
            raise FileExistsError(
                f"Export directory {path!r} exists and is not empty. Pass overwrite=True to "
                "replace it, or choose another directory (or version).")
    elif os.path.isdir(path):
        raise IsADirectoryError(f"Export path {path!r} is a directory; pass a file path.")
    elif what == "directory":
        raise FileExistsError(f"Export path {path!r} exists and is a file, not a directory.")
    elif not overwrite:
        raise FileExistsError(f"Export file {path!r} already exists. Pass overwrite=True to replace it.")


def _node_of(tensor_name: str) -> str:
    return tensor_name.lstrip("^").split(":")[0]


def _rename_nodes(graph_def: Any, renames: dict[str, str]) -> None:
    """Rename nodes and every reference to them (data and control inputs)."""
    for node in graph_def.node:
        if node.name in renames:
            node.name = renames[node.name]
        for i, name in enumerate(node.input):
            control = name.startswith("^")
            base, _, port = name.lstrip("^").partition(":")
            if base in renames:
                node.input[i] = ("^" if control else "") + renames[base] + (":" + port if port else "")


class ModelExporter:
    """Exports what a :class:`~infer_callbacks.PredictConfig` describes.

    The weights are restored once (as by :class:`~infer_callbacks.OfflinePredictor`);
    every format takes the config's ``input_names`` and returns its
    ``output_names``, with any batch size.

    Args:
        config: a :class:`~infer_callbacks.PredictConfig`.

    Example:

    ```python
    exporter = ModelExporter(PredictConfig(model=Model(), session_init="train_log/checkpoints",
                                           input_names=["image"], output_names=["prob"]))
    exporter.export_serving("export/digits", version=1)   # export/digits/1/saved_model.pb
    exporter.export_compact("export/digits.pb")           # tensors "image:0" -> "prob:0"
    exporter.export_tflite("export/digits.tflite")        # signature "serving_default"
    ```
    """

    def __init__(self, config: PredictConfig):
        require_tensorflow("ModelExporter (SavedModel, frozen GraphDef, TFLite)",
                           instead="For JAX, export with keras.export.ExportArchive or model.export(...).")
        self.config = config
        self.predictor = OfflinePredictor(config)

    @property
    def input_names(self) -> list[str]:
        return self.predictor.input_names

    @property
    def output_names(self) -> list[str]:
        return self.predictor.output_names

    def _module(self) -> tf.Module:
        """A module that tracks the function and every variable it captures
        (tf.saved_model.save refuses untracked variables)."""
        module = tf.Module()
        module.serve = self.predictor.function
        module.captured_variables = list(self.predictor.concrete_function.variables)
        return module

    # -- SavedModel ---------------------------------------------------------

    def export_serving(self, export_dir: str | os.PathLike, version: int | None = None, *,
                       overwrite: bool = False) -> str:
        """Write a SavedModel whose ``serving_default`` signature takes the
        named inputs and returns ``{output_name: tensor}``.

        Args:
            export_dir: the model's directory. With ``version``, the SavedModel
                goes to ``export_dir/<version>``: TF Serving's layout, which
                serves the largest version number.
            version: a non-negative integer, or ``None`` to write ``export_dir``
                itself.
            overwrite: replace an existing non-empty directory.

        Returns:
            The directory written. Written to a hidden temporary directory
            first and renamed, so TF Serving never sees a partial version.

        Reload with ``tf.saved_model.load(path).signatures["serving_default"](input=...)``
        or call ``loaded.serve(x)``.
        """
        export_dir = os.fspath(export_dir)
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or version < 0:
                raise ValueError("`version` must be a non-negative integer (TF Serving's version "
                                 f"directories are numbers). Received: version={version!r}")
            target = os.path.join(export_dir, str(version))
        else:
            target = export_dir
        _refuse_existing(target, overwrite, "directory")
        parent = os.path.dirname(os.path.abspath(target))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-export-")
        try:
            module = self._module()
            tf.saved_model.save(module, tmp, signatures={
                "serving_default": self.predictor.concrete_function})
            os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; TF Serving must read it
            if os.path.exists(target):
                shutil.rmtree(target)  # overwrite=True, checked above
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    # -- frozen GraphDef ----------------------------------------------------

    def compact_graph_def(self) -> tf.compat.v1.GraphDef:
        """The frozen, pruned GraphDef that :meth:`export_compact` writes."""
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        def op_name(name: str) -> str:  # "prob:0", tensorpack style, is the node "prob"
            return name[:-2] if name.endswith(":0") else name

        for name in self.input_names + self.output_names:
            if not _OP_NAME.match(op_name(name)):
                raise ValueError(
                    f"{name!r} is not a valid TensorFlow op name, so the frozen graph cannot "
                    "expose it as a tensor '<name>:0'. Rename it (letters, digits, '_', '.', '-', '/').")
        frozen = convert_variables_to_constants_v2(self.predictor.concrete_function)
        graph_def = frozen.graph.as_graph_def()
        taken = {node.name for node in graph_def.node}

        def fresh(base: str) -> str:
            i = 1
            while f"{base}_{i}" in taken:
                i += 1
            taken.add(f"{base}_{i}")
            return f"{base}_{i}"

        # Inputs: placeholders named after the input names.
        for spec, tensor in zip(self.predictor.input_signature, frozen.inputs):
            node = _node_of(tensor.name)
            if node != spec.name:
                if spec.name in taken:
                    _rename_nodes(graph_def, {spec.name: fresh(spec.name)})
                _rename_nodes(graph_def, {node: spec.name})
                taken.add(spec.name)
        # Outputs: "<name>:0" for each output name.
        structured = self.predictor.concrete_function.structured_outputs
        outputs = dict(zip(tf.nest.flatten({k: k for k in structured}), frozen.outputs))
        keep = list(self.input_names)
        for key in self.output_names:
            name = op_name(key)
            if name in self.input_names:  # an input fetched as an output: "<name>:0" already
                continue
            tensor_name = outputs[key].name
            if tensor_name != f"{name}:0":
                source = tensor_name
                if name in taken:
                    new = fresh(name)
                    _rename_nodes(graph_def, {name: new})
                    if _node_of(source) == name:
                        source = new + source[len(name):]
                identity = graph_def.node.add()
                identity.name = name
                identity.op = "Identity"
                identity.input.append(source[:-2] if source.endswith(":0") else source)
                identity.attr["T"].type = outputs[key].dtype.as_datatype_enum
                taken.add(name)
            keep.append(name)
        # Prune: only what the outputs need, without training-only nodes.
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")  # these v1 helpers log a deprecation notice on first use
        try:
            graph_def = tf.compat.v1.graph_util.extract_sub_graph(
                graph_def, [op_name(n) for n in self.output_names])
            graph_def = tf.compat.v1.graph_util.remove_training_nodes(graph_def, protected_nodes=keep)
        finally:
            logger.setLevel(level)
        return graph_def

    def export_compact(self, path: str | os.PathLike, *, overwrite: bool = False) -> str:
        """Write a frozen GraphDef (``.pb``): variables folded into constants,
        only the ops the outputs need, training-only nodes removed.

        Inputs are placeholders ``"<input_name>:0"``, outputs ``"<output_name>:0"``.
        Load it with ``tf.graph_util.import_graph_def`` (e.g. inside
        ``tf.compat.v1.wrap_function``) and run those tensors.
        """
        path = os.fspath(path)
        _refuse_existing(path, overwrite, "file")
        atomic_write_bytes(path, self.compact_graph_def().SerializeToString())
        return path

    # -- TFLite -------------------------------------------------------------

    def export_tflite(self, path: str | os.PathLike, *, overwrite: bool = False,
                      optimizations: list | None = None, allow_select_tf_ops: bool = False) -> str:
        """Write a TFLite flatbuffer with a ``serving_default`` signature
        (named inputs and outputs; any batch size).

        Args:
            path: the ``.tflite`` file.
            overwrite: replace an existing file.
            optimizations: passed to the converter (e.g.
                ``[tf.lite.Optimize.DEFAULT]`` for dynamic-range quantization,
                which changes the numbers); by default none, so the numbers
                match the model's up to float round-off.
            allow_select_tf_ops: let ops without a TFLite kernel run as
                TensorFlow ops (the interpreter then needs the Flex delegate,
                which the full ``tensorflow`` package includes).

        Run it with ``tf.lite.Interpreter(model_path=path).get_signature_runner()(input=x)``.
        """
        path = os.fspath(path)
        _refuse_existing(path, overwrite, "file")
        module = self._module()
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [self.predictor.concrete_function], module)
        if optimizations:
            converter.optimizations = list(optimizations)
        if allow_select_tf_ops:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                                   tf.lite.OpsSet.SELECT_TF_OPS]
        atomic_write_bytes(path, converter.convert())
        return path
