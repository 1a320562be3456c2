"""LightGBM as a model of its own, on the windows, folds and protocol of shared_backbone.py (seed 003, Qlib).

    python -m keras_synapse.train experiments/lightgbm.py
    python -m keras_synapse.train experiments/lightgbm.py --quick
    python -m keras_synapse.train experiments/lightgbm.py --set model=xgboost   # or catboost, random_forest

Gradient-boosted trees on each window's last bar and its feature means and
spreads (`keras_synapse/training/tree_trainer.py`), the number of trees
chosen by IC on the same validation carve-out the network stops on; the
registered `model.onnx` takes the networks' window input, so `predict` and
`serve` run it unchanged. `xgboost` and `catboost` need `pip install -e
".[trees]"`.

Result on the offline sample: see the README's model table.
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    return dataclasses.replace(shared_backbone.get_config(quick), name="lightgbm", model="lightgbm",
                               feature_importance=not quick)
