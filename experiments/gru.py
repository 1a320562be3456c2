"""Seed 004's shared backbone with GRU cells, trained as shared_backbone.py is (seed 001: GRU against LSTM).

    python -m keras_synapse.train experiments/gru.py
    python -m keras_synapse.train experiments/gru.py --quick

Same data, windows, folds, protocol and seed as `shared_backbone.py`; only the
recurrent cell differs (`keras_synapse/models/gru.py`), so the two runs'
intervals compare the cells and nothing else.

Result on the offline sample: see the README's model table.
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    return dataclasses.replace(shared_backbone.get_config(quick), name="gru", model="gru")
