"""The model runtimes behind a `Predictor`: ONNX Runtime on `model.onnx` and Keras on `model.keras`."""

import logging
import os
from collections.abc import Mapping

import numpy as np

from keras_synapse.errors import SynapseError

# One logger for the whole inference path, whichever module speaks.
logger = logging.getLogger("keras_synapse.serving.inference")


class ModelLoadError(SynapseError):
    """No backend could load the registry version's model."""


class OnnxRunner:
    def __init__(self, path, intra_op_threads=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            options.intra_op_num_threads = int(intra_op_threads)
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_shapes = {tensor.name: tensor.shape for tensor in self.session.get_inputs()}
        self.output_names = [tensor.name for tensor in self.session.get_outputs()]

    def __call__(self, inputs):
        feed = {name: inputs[name] for name in self.input_shapes}
        return dict(zip(self.output_names, self.session.run(None, feed)))


class KerasRunner:
    def __init__(self, path, intra_op_threads=None):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras

        if intra_op_threads:
            import tensorflow as tf

            try:
                tf.config.threading.set_intra_op_parallelism_threads(int(intra_op_threads))
            except RuntimeError:  # TensorFlow already initialized its thread pools
                logger.info("TensorFlow is already initialized; intra_op_threads is ignored.")
        self._use(keras.models.load_model(path, compile=False))

    @classmethod
    def from_model(cls, model):
        """A runner over a Keras model already in memory (e.g. the one just trained)."""
        runner = cls.__new__(cls)
        runner._use(model)
        return runner

    def _use(self, model):
        self.model = model
        self.input_shapes = {tensor.name: list(tensor.shape) for tensor in self.model.inputs}
        self.output_names = list(self.model.output_names)

    def __call__(self, inputs):
        outputs = self.model({name: inputs[name] for name in self.input_shapes}, training=False)
        if isinstance(outputs, Mapping):
            return {name: np.asarray(value) for name, value in outputs.items()}
        return {self.output_names[0]: np.asarray(outputs)}
