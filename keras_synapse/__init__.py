"""keras_synapse: honest deep learning on market time series with TensorFlow/Keras."""

__version__ = "0.1.0"
