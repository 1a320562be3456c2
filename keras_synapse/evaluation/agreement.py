"""Seed 003's model agreement: what an ensemble's members say beside their average.

For the `member_<k>` score columns of a run's test windows (a seed
ensemble's members, `keras_synapse.training.seed_ensemble`): each member's
test IC; the spread of their scores (the standard deviation across members,
a prediction uncertainty); the share of members whose score has the sign of
the average; and the directional accuracy where all members agree against
where they do not, each with its block-bootstrap interval, so "agreement
means accuracy" is a claim with an interval.
"""

import numpy as np

from keras_synapse.evaluation.summary import metric_intervals, regression_metrics

MEMBER_PREFIX = "member_"


def agreement_record(test_predictions, horizon, num_resamples, seed):
    """The members' ICs, spread and agreement for `metrics.json` (see the module docstring).

    Args:
        test_predictions: the run's test windows with `timestamp`,
            `prediction`, `target`, `reference` and the `member_<k>`
            columns.
        horizon: the label horizon, for the bootstrap's blocks.
        num_resamples, seed: for the intervals.

    Returns:
        A dict, or `None` without member columns.
    """
    columns = [column for column in test_predictions if column.startswith(MEMBER_PREFIX)]
    if not columns:
        return None
    scores = test_predictions[columns].to_numpy(dtype=np.float64)
    average = test_predictions["prediction"].to_numpy(dtype=np.float64)
    agreeing = (np.sign(scores) == np.sign(average)[:, None]).mean(axis=1)
    unanimous = agreeing == 1.0

    def accuracy(frame):
        if len(frame) < 2 * horizon:
            return {"n": int(len(frame))}
        intervals = metric_intervals(frame, "prediction", horizon, num_resamples, seed)
        low, high = intervals["directional_accuracy"]
        point = regression_metrics(frame["prediction"], frame["target"], frame["reference"])
        return {"n": int(len(frame)), "directional_accuracy": float(point["directional_accuracy"]),
                "ci": [float(low), float(high)]}

    return {
        "members": len(columns),
        "member_ic": [float(regression_metrics(test_predictions[column], test_predictions["target"],
                                               test_predictions["reference"])["ic"]) for column in columns],
        "mean_spread": float(scores.std(axis=1).mean()),
        "mean_agreement": float(agreeing.mean()),
        "unanimous_share": float(unanimous.mean()),
        "unanimous": accuracy(test_predictions[unanimous]),
        "split": accuracy(test_predictions[~unanimous]),
    }


def format_agreement(record):
    """The agreement lines of the printed summary."""
    def accuracy(part):
        if "directional_accuracy" not in part:
            return f"{part['n']} windows"
        return (f"{part['directional_accuracy']:.4f} [{part['ci'][0]:.4f}, {part['ci'][1]:.4f}] on {part['n']} "
                "windows")

    ics = ", ".join(f"{ic:+.4f}" for ic in record["member_ic"])
    return (f"\nseed ensemble of {record['members']}: member ICs {ics}; mean spread {record['mean_spread']:.4f}; "
            f"members agreeing with the average {record['mean_agreement']:.1%}, all agree on "
            f"{record['unanimous_share']:.1%} of windows\n"
            f"directional accuracy where all agree {accuracy(record['unanimous'])}, where they split "
            f"{accuracy(record['split'])}")
