"""Hyperparameter search with keras-tuner, scored on the validation carve-outs of gapped folds before the first test fold
(`python -m keras_synapse.tune` is the command).
"""
