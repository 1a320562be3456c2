"""Seed 003's stack: an LSTM and gradient-boosted trees, combined by a linear meta-learner on out-of-fold scores.

    python -m keras_synapse.train experiments/ensemble.py
    python -m keras_synapse.train experiments/ensemble.py --quick

Members: the shared backbone (trained as `shared_backbone.py` is), LightGBM,
XGBoost and CatBoost on window summaries. In every fold each member is
trained three more times, on purged inner folds of the fit windows, so that
the ridge meta-learner learns from scores of windows the member had not seen
(`keras_synapse/training/stacking.py`); the members are then refit on all the
fit windows. Seed 003 also stacks a random forest; it is left out here
because scikit-learn's forest costs more than every other member together on
two cores (`--set model=stack:shared_backbone+lightgbm+xgboost+catboost+random_forest`
adds it). Needs `pip install -e ".[trees]"`.

Result on the offline sample: see the README's model table.
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    config = dataclasses.replace(shared_backbone.get_config(quick), name="ensemble",
                                 model="stack:shared_backbone+lightgbm+xgboost+catboost")
    # A smoke run with two folds: every member still trains four times a fold.
    return dataclasses.replace(config, n_splits=2) if quick else config
