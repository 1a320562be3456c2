"""Tree models as models of a run: fitted per fold on window summaries, scored and registered like the networks.

`--set model=lightgbm` (or `xgboost`, `catboost`, `random_forest`;
`keras_synapse.models.trees`) trains on the same windows, folds and
early-stopping carve-out as a network: each fit reads its fit windows'
summaries (the last bar's features and each feature's window mean and
standard deviation, in float32 as the exported graph computes them,
`keras_synapse.models.tree_windows`), and the number of trees is chosen by
IC on the validation windows, the measure the networks stop on. The test
windows are scored by the same evaluation, the final refit is registered
with the same model card, and its ONNX graph takes the networks' input
(`{"sequence": [N, L, F]}`), so `predict` and `serve` run it unchanged.

A tree regresses on the label's target, so only regression labels train
one; static (hybrid) inputs, multi-task heads, fine-tuning and seed
ensembles are networks' features and are refused with a tree.
"""

import numpy as np

from keras_synapse.errors import ConfigError

TREE_THREADS = 2


def is_tree(config):
    """True when the experiment's model is a tree model."""
    from keras_synapse.models.trees import TREE_MODELS

    return config.model in TREE_MODELS


def check_tree_settings(config, data):
    """Refuses what a tree model cannot do, before anything is written.

    Raises:
        ConfigError: naming the setting and what a tree needs.
    """
    refused = []
    if data.task.kind != "regression":
        refused.append(f"label '{config.label}' is {data.task.kind}; a tree regresses on a regression label")
    if config.static_features:
        refused.append(f"static_features={config.static_features!r}; a tree reads the sequence's summaries only")
    if data.head_tasks:
        refused.append("multi-task heads; a tree has one output")
    if config.finetune_symbol or config.ensemble_seeds != 1:
        refused.append("finetune_symbol and ensemble_seeds are for networks")
    if refused:
        raise ConfigError(f"model={config.model!r} cannot train here: " + "; ".join(refused) + ".")
    from keras_synapse.models.trees import require_packages

    require_packages(config.model)  # an extra missing for the export would otherwise stop the run after training


class TreeModel:
    """A fitted tree and what scores it: `predict` takes the networks' inputs (a dataset or `{"sequence": ...}`).

    Args:
        kind: one of `keras_synapse.models.trees.TREE_MODELS`.
        native: the fitted regressor.
        info: `fit_tree`'s record (`num_trees`, `validation_ic`, `parameters`).
        name: the experiment's name.
    """

    def __init__(self, kind, native, info, name):
        self.kind, self.native, self.info, self.name = kind, native, info, name

    def predict(self, inputs, verbose=0, batch_size=None):
        """`[windows, 1]` predictions of a `tf.data` dataset of input dicts or of one input dict."""
        from keras_synapse.models.tree_windows import float32_window_summaries

        del verbose, batch_size  # Keras' `predict` arguments, so the scorers call both alike
        batches = [inputs] if isinstance(inputs, dict) else list(inputs)
        parts = [self.native.predict(float32_window_summaries(np.asarray(batch["sequence"], dtype=np.float32)))
                 for batch in batches]
        return np.concatenate(parts).reshape(-1, 1) if parts else np.zeros((0, 1))

    def count_params(self):
        """The number of trees, where a network counts weights."""
        return int(self.info["num_trees"])


class TreeTrainer:
    """Fits one tree per fold and the final refit (the `FoldTrainer` interface; nothing to checkpoint).

    Args:
        config: the `ExperimentConfig`.
        data: the `PreparedData`.
        run_dir: the run directory (unused: a fit takes seconds).
        resume: accepted for the `FoldTrainer` interface.
    """

    def __init__(self, config, data, run_dir=None, resume=False):
        del run_dir, resume
        check_tree_settings(config, data)
        self.config, self.data = config, data

    def fit(self, split, name, base_model=None):
        """Fits on `split["fit"]`, the number of trees chosen on `split["validation"]`; returns `(model, history)`."""
        from keras_synapse.models.tree_windows import float32_window_summaries
        from keras_synapse.models.trees import fit_tree

        del name, base_model
        windowed = self.data.windowed

        def rows(ends):
            return float32_window_summaries(windowed.gather(ends)["sequence"]), windowed.targets[ends]

        native, info = fit_tree(self.config.model, *rows(split["fit"]), *rows(split["validation"]),
                                seed=self.config.seed, threads=TREE_THREADS)
        return TreeModel(self.config.model, native, info, self.config.name), {"validation_ic": [info["validation_ic"]]}
