"""Training: the Keras losses, metrics and callbacks of a fit, and the tf.distribute strategy it runs under."""
