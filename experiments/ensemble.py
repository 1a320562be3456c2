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

Result on the offline sample (the command above, seed 42, 427 s on the 2-core
CPU): no detectable edge, as for each member. The stack's test IC is +0.017
[95% CI -0.017, +0.051] (minimum detectable 0.048), directional accuracy
0.515 [0.499, 0.531]; its members alone, each in its own run on the same
folds: the shared backbone -0.020 [-0.062, +0.022], LightGBM -0.019 [-0.041,
+0.004], XGBoost -0.020 [-0.047, +0.005], CatBoost -0.014 [-0.051, +0.024].
Against the run's LightGBM baseline the stack's IC is +0.032 higher [95% CI
-0.015, +0.079]: not distinguishable. The meta-learner's weights stay near
zero (within +-0.05 on standardized scores) because no member's out-of-fold
IC exceeds 0.02 in any fold: there is nothing here to combine.
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    config = dataclasses.replace(shared_backbone.get_config(quick), name="ensemble",
                                 model="stack:shared_backbone+lightgbm+xgboost+catboost")
    # A smoke run with one test fold: every member still trains four times in it, and four times for the refit.
    return dataclasses.replace(config, n_splits=1, test_size=0.3) if quick else config
