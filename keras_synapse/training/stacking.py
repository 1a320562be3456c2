"""Stacking (seed 003): heterogeneous members combined by a linear meta-learner fitted on out-of-fold predictions.

`--set model=stack:shared_backbone+lightgbm+xgboost` trains, in every fold,
each member on the fold's fit windows and a ridge meta-learner on what the
members predicted for fit windows they had not seen:

1. The fit windows are cut into `INNER_FOLDS` consecutive time blocks. For
   each block, every member is trained on the other blocks' windows, less
   those whose label interval reaches into the block or the `horizon` bars
   after it (purged and embargoed, as the outer folds are), with its
   normalization fitted on those rows only and its early stopping on the
   fold's validation windows, and predicts the block. Each fit window so
   gets one out-of-fold prediction per member, from a model that never saw
   it nor any window whose label overlaps it.
2. The meta-learner, a ridge regression on the standardized out-of-fold
   predictions (`STACK_PENALTY` x their number), is fitted on those rows
   only: never on a validation or test window, never on a prediction of a
   window a member trained on.
3. Each member is then trained on all the fit windows, and the stack scores
   a window as the meta-learner's combination of the members' scores.

It costs `INNER_FOLDS + 1` fits per member and fold. The members' weights
and out-of-fold ICs are in `metrics.json` (`stack`). Only regression labels
on sequence inputs stack (the trees' limits). The registry version holds one
ONNX graph per member and the combination's weights (`model_format: stack`);
the predictor runs the members and combines them.
"""

import dataclasses

import numpy as np

from keras_synapse.errors import ConfigError

STACK_PREFIX = "stack:"
INNER_FOLDS = 3
STACK_PENALTY = 0.01


def is_stack(config_or_model):
    """True for `model="stack:A+B+..."`."""
    model = getattr(config_or_model, "model", config_or_model)
    return str(model).startswith(STACK_PREFIX)


def stack_members(model):
    """`"stack:shared_backbone+lightgbm"` -> `("shared_backbone", "lightgbm")`, each a known model.

    Raises:
        ConfigError: for fewer than two members, a repeated or unknown one.
    """
    from keras_synapse.models import MODEL_NAMES
    from keras_synapse.models.trees import TREE_MODELS

    members = tuple(part.strip() for part in str(model)[len(STACK_PREFIX):].split("+") if part.strip())
    unknown = [member for member in members if member not in MODEL_NAMES + TREE_MODELS or member == "multitask"]
    if len(members) < 2 or len(set(members)) != len(members) or unknown:
        raise ConfigError(f"`model=stack:A+B+...` needs two or more different members among "
                          f"{', '.join(name for name in MODEL_NAMES + TREE_MODELS if name != 'multitask')}. "
                          f"Received: model={model!r}" + (f" (unknown: {unknown})" if unknown else ""))
    return members


def inner_blocks(windowed, calendar, fit_ends, horizon, count=INNER_FOLDS):
    """The inner folds of a fold's fit windows: `(held_out_ends, training_ends, training_rows)` per time block.

    A block's training windows are the other fit windows whose label ends
    before the block starts or that start more than `horizon` bars after it
    ends; `training_rows` marks the feature rows outside the block and its
    embargo, within the fit period.
    """
    times, label_ends = windowed.timestamps, windowed.label_end_times
    fit_times = np.unique(times[fit_ends])
    edges = np.linspace(0, len(fit_times), count + 1).round().astype(int)
    blocks = []
    for first, last in zip(edges[:-1], edges[1:]):
        start, end = fit_times[first], fit_times[last - 1]
        embargo_end = calendar[min(np.searchsorted(calendar, end) + horizon, len(calendar) - 1)]
        held_out = fit_ends[(times[fit_ends] >= start) & (times[fit_ends] <= end)]
        keep = (label_ends[fit_ends] < start) | (times[fit_ends] > embargo_end)
        rows = (times <= fit_times[-1]) & ~((times >= start) & (times <= embargo_end))
        blocks.append((held_out, fit_ends[keep], rows))
    return blocks


def check_stack_settings(config, data):
    """Refuses what a stack cannot do, before anything is written.

    Raises:
        ConfigError: naming the setting.
    """
    stack_members(config.model)
    if data.task.kind != "regression" or config.static_features or data.head_tasks:
        raise ConfigError(f"model={config.model!r} stacks regression labels on sequence inputs only. Received: "
                          f"label {config.label!r} ({data.task.kind}), static_features={config.static_features!r}")
    if config.finetune_symbol or config.ensemble_seeds != 1:
        raise ConfigError(f"model={config.model!r}: finetune_symbol and ensemble_seeds are for one network.")
    from keras_synapse.models.trees import TREE_MODELS, require_packages

    for member in stack_members(config.model):
        if member in TREE_MODELS:
            require_packages(member)


class StackModel:
    """The members and the meta-learner: `predict` takes the networks' inputs (a dataset or an input dict).

    Args:
        members: dict member name -> fitted model (a Keras model or a `TreeModel`).
        weights: dict member name -> weight on its standardized score.
        intercept: the meta-learner's intercept.
        mean, scale: dict member name -> the out-of-fold scores' mean and
            standard deviation the weights apply to.
        name: the experiment's name.
    """

    def __init__(self, members, weights, intercept, mean, scale, name):
        self.members, self.weights, self.intercept = members, weights, float(intercept)
        self.mean, self.scale, self.name = mean, scale, name

    def combine(self, scores):
        """The stack's `[windows, 1]` output from each member's scores (dict member -> `[windows]`)."""
        total = np.full(len(next(iter(scores.values()))), self.intercept)
        for member, values in scores.items():
            total += self.weights[member] * (np.ravel(values) - self.mean[member]) / self.scale[member]
        return total.reshape(-1, 1)

    def predict(self, inputs, verbose=0, batch_size=None):
        return self.combine({member: np.asarray(model.predict(inputs, verbose=0)).ravel()
                             for member, model in self.members.items()})

    def count_params(self):
        return int(sum(model.count_params() for model in self.members.values()))


class StackTrainer:
    """Fits a stack per fold and the final refit (the `FoldTrainer` interface; see the module docstring).

    Args:
        config, data, run_dir, resume: as for `FoldTrainer`; each network
            member checkpoints in its own directories under `run_dir`.
    """

    def __init__(self, config, data, run_dir, resume=False):
        check_stack_settings(config, data)
        self.config, self.data = config, data
        self.members = stack_members(config.model)
        self.trainers = {member: self._trainer(member, run_dir, resume) for member in self.members}
        self.last_record = None

    def _trainer(self, member, run_dir, resume):
        from keras_synapse.training.trainer import FoldTrainer
        from keras_synapse.training.tree_trainer import TreeTrainer, is_tree

        config = dataclasses.replace(self.config, model=member, name=f"{self.config.name}_{member}")
        return (TreeTrainer if is_tree(config) else FoldTrainer)(config, self.data, run_dir, resume)

    def _scores(self, model, ends):
        from keras_synapse.windows.dataset import make_dataset

        dataset = make_dataset(self.data.windowed, ends, self.config.batch_size, with_targets=False)
        return np.asarray(model.predict(dataset, verbose=0)).ravel()

    def fit(self, split, name, base_model=None):
        """Out-of-fold member scores, the meta-learner on them, then the members on all fit windows."""
        from keras_synapse.models.ridge import LinearMoments

        del base_model
        windowed = self.data.windowed
        fit_ends = split["fit"]
        out_of_fold = {member: np.full(len(windowed.timestamps), np.nan) for member in self.members}
        for index, (held_out, training, rows) in enumerate(inner_blocks(
                windowed, windowed.calendar, fit_ends, self.config.horizon)):
            if len(training) == 0 or len(held_out) == 0:
                continue
            inner = {**split, "fit": training, "fit_rows": rows & split["fit_rows"]}
            for member, trainer in self.trainers.items():
                model, _ = trainer.fit(inner, f"{name}_inner_{index}_{member}")
                out_of_fold[member][held_out] = self._scores(model, held_out)
        known = np.isfinite(np.column_stack([out_of_fold[member][fit_ends] for member in self.members])).all(axis=1)
        rows = fit_ends[known]
        scores = np.column_stack([out_of_fold[member][rows] for member in self.members])
        mean, scale = scores.mean(axis=0), scores.std(axis=0)
        scale[scale == 0] = 1.0
        standardized = (scores - mean) / scale
        targets = windowed.targets[rows].astype(np.float64)
        solver = LinearMoments.of(standardized, targets).solver()
        coefficients = solver.coefficients([STACK_PENALTY * len(rows)])[:, 0] / solver.scale
        intercept = solver.target_mean - float(solver.mean @ coefficients)
        members, histories = {}, {}
        for member, trainer in self.trainers.items():
            members[member], histories[member] = trainer.fit(split, f"{name}_{member}")
        self.last_record = {
            "members": list(self.members),
            "weights": {member: float(weight) for member, weight in zip(self.members, coefficients)},
            "out_of_fold_windows": int(len(rows)),
            "out_of_fold_ic": {member: float(np.corrcoef(scores[:, column], targets)[0, 1])
                               for column, member in enumerate(self.members)},
        }
        stack = StackModel(members, dict(zip(self.members, coefficients)), intercept, dict(zip(self.members, mean)),
                           dict(zip(self.members, scale)), self.config.name)
        stack.record = self.last_record
        return stack, histories[self.members[0]]
