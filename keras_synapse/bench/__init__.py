"""Benchmarks (`python -m keras_synapse.bench ...`): each prints its figures beside a reference measured
in the same run, as medians over repeats.
"""
