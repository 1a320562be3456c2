"""Stacking: the meta-learner learns from out-of-fold scores of the fit windows only, purged; a test-only edge moves
nothing."""

import dataclasses
import types

import numpy as np
import pytest

from keras_synapse.config import ExperimentConfig
from keras_synapse.data.synthetic import generate_universe
from keras_synapse.errors import ConfigError
from keras_synapse.features import compute_features
from keras_synapse.labels import compute_labels
from keras_synapse.labels.tasks import Task
from keras_synapse.training.stacking import StackTrainer, inner_blocks, stack_members
from keras_synapse.windows.dataset import build_windowed_panel

HORIZON = 5


@pytest.fixture(scope="module")
def prepared():
    panel = generate_universe(num_symbols=6, num_bars=900, seed=4).panel
    labels = compute_labels(panel, horizon=HORIZON)
    windowed = build_windowed_panel(compute_features(panel, "core"), labels, 10, HORIZON)
    task = Task.from_labels("forward_return", labels)
    return types.SimpleNamespace(windowed=windowed, task=task, head_tasks=None, panel=panel)


def outer_split(windowed):
    ends = windowed.labelled_ends()
    times, label_ends = windowed.timestamps[ends], windowed.label_end_times[ends]
    fit_end, validation_end = np.quantile(times, [0.55, 0.7])
    gap = np.timedelta64(10, "D")
    return {"fit": ends[label_ends < fit_end], "fit_rows": windowed.timestamps <= fit_end,
            "validation": ends[(times > fit_end + gap) & (label_ends < validation_end)],
            "test": ends[times > validation_end + gap]}


def stack(prepared, windowed=None):
    data = prepared if windowed is None else types.SimpleNamespace(**{**vars(prepared), "windowed": windowed})
    config = ExperimentConfig(model="stack:lightgbm+xgboost", horizon=HORIZON, gap=HORIZON)
    trainer = StackTrainer(config, data, run_dir=None)
    split = outer_split(data.windowed)
    model, _ = trainer.fit(split, "fold_0")
    inputs = {"sequence": data.windowed.gather(split["test"])["sequence"]}
    return model, model.predict(inputs).ravel()


def test_every_inner_training_window_is_purged_from_its_held_out_block(prepared):
    windowed = prepared.windowed
    split = outer_split(windowed)
    blocks = inner_blocks(windowed, windowed.calendar, split["fit"], HORIZON)
    held_out = np.concatenate([block[0] for block in blocks])
    assert np.array_equal(np.sort(held_out), np.sort(split["fit"]))  # each fit window gets one out-of-fold score
    for block, training, rows in blocks:
        first, last = windowed.timestamps[block].min(), windowed.timestamps[block].max()
        times, ends = windowed.timestamps[training], windowed.label_end_times[training]
        assert not ((ends >= first) & (times <= last)).any()  # no training label overlaps the block
        assert not np.isin(training, block).any()
        assert not (rows & (windowed.timestamps >= first) & (windowed.timestamps <= last)).any()


def test_an_edge_planted_only_in_the_test_period_moves_no_weight_and_no_score(prepared):
    model, scores = stack(prepared)
    windowed = prepared.windowed
    test = outer_split(windowed)["test"]
    # The test windows' targets become a function of their own features: an edge no fit window shows.
    targets = windowed.targets.copy()
    targets[test] = windowed.features[test, 0] * 10
    planted, planted_scores = stack(prepared, dataclasses.replace(windowed, targets=targets))
    assert planted.weights == model.weights and planted.intercept == model.intercept
    np.testing.assert_array_equal(planted_scores, scores)
    assert model.record["out_of_fold_windows"] == len(outer_split(windowed)["fit"])
    # And an edge in the fit period is learned: the meta-learner's inputs do carry what the members see.
    fit = outer_split(windowed)["fit"]
    learned = windowed.targets.copy()
    signal = windowed.features[fit, 0] / windowed.features[fit, 0].std()
    learned[fit] = signal + 0.5 * np.random.default_rng(0).normal(size=len(fit))
    trained, _ = stack(prepared, dataclasses.replace(windowed, targets=learned))
    assert max(trained.record["out_of_fold_ic"].values()) > 0.5


def test_a_stack_of_random_walks_claims_no_edge(prepared):
    from keras_synapse.evaluation.summary import metric_intervals

    _, scores = stack(prepared)  # the fixture's universe has no planted edge
    frame = prepared.windowed.window_frame(outer_split(prepared.windowed)["test"]).assign(prediction=scores)
    frame = frame.assign(reference=prepared.task.reference(frame))
    low, high = metric_intervals(frame, "prediction", HORIZON, 300, 0)["ic"]
    assert low <= 0 <= high  # the verdict's rule: an edge only when the IC's interval lies above zero


def test_stack_members_are_checked():
    assert stack_members("stack:shared_backbone+lightgbm") == ("shared_backbone", "lightgbm")
    for text in ("stack:lightgbm", "stack:lightgbm+lightgbm", "stack:lightgbm+prophet"):
        with pytest.raises(ConfigError, match="two or more different members"):
            stack_members(text)
