"""A run's `metrics.json`: per-fold metrics, the summary with intervals and the verdict, baselines, backtest."""

import numpy as np

from keras_synapse.windows.splitters import iso_utc


def baseline_columns(data, split, seed):
    """Every baseline's scores on the fold's test windows, as `baseline_<name>` columns."""
    from keras_synapse.evaluation.baselines import baseline_predictions

    # The linear baselines learn from every bar of the fit period (whatever
    # the network's stride), purged before the carve-out like the fit windows.
    predictions = baseline_predictions(data.windowed, split["baseline_fit"], split["validation"], split["test"], seed)
    # The ridge regresses class indices for class labels; centre it on the
    # middle of the class range so its sign reads like the model's score.
    if data.task.kind != "regression":
        predictions["ridge"] = predictions["ridge"] - (len(data.task.classes) - 1) / 2
    return {f"baseline_{name}": values for name, values in predictions.items()}


def fold_metrics(frame, task, column="prediction"):
    """Test-fold metrics of one prediction column: the rank statistics, the headline set and the task's own."""
    from keras_synapse.evaluation.intervals import TimestampSums, metrics_from_sums
    from keras_synapse.evaluation.summary import classification_metrics, regression_metrics

    ranked = metrics_from_sums(TimestampSums(frame, [column]).sums[column].sum(axis=0))
    metrics = {name: float(ranked[name]) for name in ("per_date_rank_ic", "within_fold_rank_ic")}
    metrics.update(regression_metrics(frame[column], frame["target"], frame["reference"]))
    if task.kind == "regression":
        return metrics
    del metrics["mse"]  # a cross-entropy model is judged by its classification report instead
    if column == "prediction":
        probabilities = frame[[f"probability_{name}" for name in task.classes]].to_numpy()
        metrics.update(classification_metrics(probabilities, frame["target"], task.classes))
    return metrics


def head_metrics(frame, head_tasks):
    """Per-head test metrics of a multi-task model, on the windows where each head's label is known."""
    from keras_synapse.evaluation.summary import regression_metrics

    results = {}
    for head, head_task in head_tasks.items():
        known = np.isfinite(frame[f"head_target_{head}"].to_numpy(dtype=float))
        score, target = frame[f"head_{head}"][known], frame[f"head_target_{head}"][known]
        if head_task.kind == "regression":
            metrics = regression_metrics(score, target, target)
            results[head] = {"n": int(known.sum()), "mse": metrics["mse"], "ic": metrics["ic"],
                             "rank_ic": metrics["rank_ic"]}
        else:
            centred = target - (len(head_task.classes) - 1) / 2
            metrics = regression_metrics(score, target, centred)
            results[head] = {"n": int(known.sum()), "directional_accuracy": metrics["directional_accuracy"],
                             "ic": metrics["ic"], "balance": head_task.balance(target)}
    return results


def fold_record(fold, split, frame, history, task, head_tasks=None):
    return {
        "index": fold.index,
        **fold.as_dict(),
        "validation": [iso_utc(split["validation_start"]), iso_utc(split["validation_end"])],
        "n_train": int(len(split["fit"])),
        "n_validation": int(len(split["validation"])),
        "n_test": int(len(split["test"])),
        "epochs_trained": len(history.get("loss", [])),
        "metrics": fold_metrics(frame, task),
        **({"heads": head_metrics(frame, head_tasks)} if head_tasks else {}),
    }


def evaluate_run(config, data, run_dir, fold_results, test_predictions, calendar, fold_predictions=None,
                 path_masks=None):
    """Summary with intervals, baselines on the same folds, and the backtest.

    Args:
        test_predictions: the test windows the summary, baselines and
            backtest pool, each once.
        fold_predictions: every fold's test predictions, for the per-fold
            figures; defaults to `test_predictions`. Under CPCV a window is
            tested by several splits, and `test_predictions` is one path.
        path_masks: under CPCV, a mask over `fold_predictions` per backtest
            path (`keras_synapse.evaluation.cpcv_paths`).

    Returns:
        The `metrics.json` content (without `model`) and the equity curves
        (`None` when the backtest does not apply).
    """
    from keras_synapse.config import strategy_rules
    from keras_synapse.evaluation.backtest import backtest
    from keras_synapse.evaluation.classical import COLUMN_PREFIX, classical_columns
    from keras_synapse.evaluation.intervals import bootstrap_metrics
    from keras_synapse.evaluation.panel_metrics import information_coefficients
    from keras_synapse.evaluation.positions import direction_calibration
    from keras_synapse.evaluation.summary import (
        baselines_with_an_edge,
        best_baseline,
        choose_primary_statistic,
        edge_verdict,
        metric_intervals,
        summarize,
        versus_baselines,
    )

    task = data.task
    fold_predictions = test_predictions if fold_predictions is None else fold_predictions
    baseline_columns = [column for column in test_predictions.columns if column.startswith("baseline_")]
    # One set of bootstrap draws for the model and every baseline, so their differences get paired
    # intervals. The block length comes from the labels (at least one horizon), never from a model.
    bootstrap = bootstrap_metrics(test_predictions, ["prediction", *baseline_columns], min_block_length=config.horizon,
                                  num_resamples=BOOTSTRAP_RESAMPLES, seed=config.seed)
    # Chosen from the run's shape and strategy before any prediction is read.
    primary = choose_primary_statistic(config.primary_statistic, test_predictions,
                                       ranks_symbols=bool(config.top_k or config.label_cross_section != "none"))
    summary = summarize([fold["metrics"] for fold in fold_results], test_predictions, "prediction", bootstrap,
                        primary)
    for name in ("accuracy", "f1", "balanced_accuracy"):
        if name in fold_results[0]["metrics"]:
            summary[name] = {"mean": float(np.mean([fold["metrics"][name] for fold in fold_results]))}
    for fold, (_, group) in zip(fold_results, fold_predictions.groupby("fold", sort=True)):
        intervals = metric_intervals(group, "prediction", config.horizon, FOLD_RESAMPLES, config.seed)
        fold["intervals"] = {name: list(intervals[name]) for name in fold["metrics"] if name in intervals}
    baselines = {}
    for column in baseline_columns:
        per_fold = [fold_metrics(group, task, column) for _, group in fold_predictions.groupby("fold")]
        baselines[column.removeprefix("baseline_")] = {"folds": per_fold,
                                                       "summary": summarize(per_fold, test_predictions, column,
                                                                            bootstrap, primary)}
    summary["versus_baselines"] = versus_baselines(bootstrap, "prediction", baseline_columns, primary[0])
    summary["baselines_with_an_edge"] = baselines_with_an_edge(bootstrap, baseline_columns, primary[0])
    summary["best_baseline"] = best_baseline(baselines, primary[0])
    summary["verdict"] = edge_verdict(summary, summary["versus_baselines"], baselines,
                                      summary["baselines_with_an_edge"], config.model)
    if task.kind != "regression":
        majority = np.bincount(test_predictions["target"].astype(int)).argmax()
        baselines["majority_class"] = {"accuracy": float(np.mean(test_predictions["target"] == majority)),
                                       "class": task.classes[majority]}
    metrics = {
        "experiment": config.name,
        "run_id": run_dir.name,
        "label": {"name": task.label, "kind": task.kind, "classes": list(task.classes), "horizon": config.horizon,
                  "execution_lag": config.execution_lag, "cross_section": config.label_cross_section,
                  "scored_against": "forward return" if task.directional else "event outcome"},
        "label_balance": task.balance(data.windowed.targets[data.windowed.labelled_ends()]),
        "folds": fold_results,
        "summary": summary,
        # IC within each date across symbols (seed 004's ranking view), and each symbol's own metrics over time.
        "cross_sectional": information_coefficients(test_predictions, "prediction", "reference"),
        "per_symbol": symbol_table(config, task, test_predictions),
        "baselines": baselines,
        "bootstrap": {"method": "stationary bootstrap over timestamps, mean block length by Politis-White on "
                                "each date's mean outcome (the labels', shared by the model and every baseline)",
                      "block_length_timestamps": bootstrap.block_length, "num_timestamps": bootstrap.num_timestamps,
                      "num_windows": int(len(test_predictions)),
                      "resamples": BOOTSTRAP_RESAMPLES, "fold_resamples": FOLD_RESAMPLES, "level": bootstrap.level},
    }
    if config.horizons and task.directional:
        from keras_synapse.evaluation.ic_decay import ic_decay

        metrics["ic_decay"] = ic_decay(test_predictions, data.panel, config.horizons, config.execution_lag,
                                       BOOTSTRAP_RESAMPLES, config.seed)
    metrics["cv"] = splitter_record(config)
    rules = strategy_rules(config)
    # Symbols on different calendars are held as sleeves, each on its own dates.
    own_calendars = data.windowed.symbol_calendars()

    def with_sides(frame):  # the classical strategy's side, when the strategy trades one
        if (rules.primary_side_column or "").startswith(COLUMN_PREFIX):
            return frame.assign(**classical_columns(frame, data.panel))
        return frame

    equity = None
    # An event model (pattern validation, a meta-label) trades only as a filter on a primary side.
    trades = task.directional or rules.signal == "meta_label"
    if trades:
        # The baselines trade under the same rules, so the strategy is judged against them, not only the market.
        # Always-up trades exactly as buy-and-hold: its book would only be drawn over that one.
        traded = ([column for column in baseline_columns if column != "baseline_always_up"] if task.directional
                  else [])
        results, equity = backtest(with_sides(test_predictions), "prediction", config.horizon, config.cost_bps,
                                   calendar, _bars_per_year(calendar), rules=rules, score_columns=traded,
                                   symbol_calendars=own_calendars)
        entry = (f"entered at the open {config.execution_lag} bar(s) after the signal and left at the open one "
                 "horizon later (closes-only symbols: at the closes)" if config.execution_lag
                 else "entered at the signal bar's close")
        what = f"strategy {config.strategy}" if config.strategy else "sign(score), equal weight"
        metrics["backtest"] = {**results, "cost_bps": config.cost_bps,
                               "rule": f"{what}, {entry}, held one horizon, non-overlapping"}
    if task.directional:
        metrics["backtest"]["same_books"] = {"baseline_always_up": "buy_and_hold"}
        # For a service to state a regression model's confidence: P(up | score), fitted out of sample.
        metrics["calibration"] = {**direction_calibration(test_predictions["prediction"],
                                                          test_predictions["forward_return"]),
                                  "fitted_on": "the run's test predictions (out of sample)",
                                  "map": "P(up) = 1 / (1 + exp(-(intercept + slope * score)))"}
        if config.top_k:
            # The cross-sectional view: does the ranking pay, whatever the market does?
            ranked, _ = backtest(test_predictions, "prediction", config.horizon, config.cost_bps, calendar,
                                 _bars_per_year(calendar), score_columns=traded, symbol_calendars=own_calendars,
                                 execution_lag=config.execution_lag, signal="top_k", top_k=config.top_k)
            metrics["backtest_top_k"] = {**ranked, "cost_bps": config.cost_bps,
                                         "rule": f"long the {config.top_k} highest scores and short the "
                                                 f"{config.top_k} lowest at each rebalance, 1/{2 * config.top_k} "
                                                 f"each, {entry}, held one horizon, non-overlapping"}
    else:
        metrics["calibration"] = event_calibrations(test_predictions, data.panel)
    if not trades:
        metrics["backtest"] = {"cost_bps": config.cost_bps, "skipped": (
            f"'{task.label}' predicts whether an event resolves, not a direction; it trades as a filter on a primary "
            "side: --set strategy=\"signal=meta_label;primary_side_column=momentum;confidence_target=event\" (the "
            "A/B filters each classical strategy so)")}
    if config.ab_test:
        from keras_synapse.evaluation.strategy_ab import classical_ab

        metrics["backtest"]["ab_test"] = classical_ab(
            test_predictions, data.panel, config.horizon, config.cost_bps, calendar, _bars_per_year(calendar),
            own_calendars, rules, config.filter_confidence, BOOTSTRAP_RESAMPLES, config.seed, task.directional)
    if path_masks is not None:
        from keras_synapse.evaluation.cpcv_paths import path_distribution

        def trade(frame):
            if not trades:
                return None
            return backtest(with_sides(frame), "prediction", config.horizon, config.cost_bps, calendar,
                            _bars_per_year(calendar), rules=rules, symbol_calendars=own_calendars)[0]["strategy"]

        metrics["cpcv"] = path_distribution(fold_predictions, path_masks, lambda frame: fold_metrics(frame, task),
                                            trade)
    return metrics, equity


def event_calibrations(test_predictions, panel):
    """For an event model's service: P(each classical strategy's side wins | score), fitted out of sample.

    The walk-forward filter of the backtest refits this map at every
    rebalance; the service has one map per strategy, fitted once on all the
    run's test windows where the strategy took a side.
    """
    from keras_synapse.errors import BacktestError
    from keras_synapse.evaluation.classical import CLASSICAL_STRATEGIES, COLUMN_PREFIX, classical_columns
    from keras_synapse.evaluation.positions import direction_calibration

    sides = classical_columns(test_predictions, panel)
    strategies = {}
    for name in CLASSICAL_STRATEGIES:
        side = sides[f"{COLUMN_PREFIX}{name}"]
        taken = side != 0
        try:
            strategies[name] = direction_calibration(test_predictions["prediction"].to_numpy()[taken],
                                                     (side * test_predictions["forward_return"].to_numpy())[taken])
        except BacktestError:
            continue  # the side never won or never lost on the test windows: no map to state
    return {"target": "event", "strategies": strategies,
            "fitted_on": "the run's test predictions (out of sample), where the strategy took a side",
            "map": "P(the strategy's side wins) = 1 / (1 + exp(-(intercept + slope * score)))"}


def splitter_record(config):
    """The splitter that cut the folds, in words and settings, for `metrics.json` and the report."""
    if config.cv == "purged_kfold":
        words = (f"purged k-fold: {config.n_splits} time blocks, each tested once by a model trained on the blocks "
                 f"before and after it, purged and embargoed {config.embargo} bars; not a walk-forward result")
    elif config.cv == "cpcv":
        words = (f"combinatorial purged CV: every {config.cv_test_groups} of {config.cv_groups} time blocks, purged "
                 f"and embargoed {config.embargo} bars; the pooled figures are backtest path 0's")
    else:
        words = (f"gapped walk-forward: {config.n_splits} consecutive test blocks, {config.gap} bars of gap, "
                 + (f"sliding {config.train_bars}-bar training window" if config.train_bars else
                    "expanding training window"))
    return {"splitter": config.cv, "description": words, "embargo": config.embargo, "gap": config.gap}


# Per-symbol intervals cost a bootstrap each: beyond this many symbols the table keeps the point values only.
MAX_SYMBOLS_WITH_INTERVALS = 100


def symbol_table(config, task, test_predictions):
    """Each symbol's metrics over its test windows, with 95% intervals of its IC and directional accuracy."""
    from keras_synapse.evaluation.panel_metrics import per_symbol_metrics
    from keras_synapse.evaluation.summary import metric_intervals

    table = per_symbol_metrics(test_predictions, "prediction", "reference", target_column="target"
                               if task.kind == "regression" else None).to_dict(orient="index")
    if len(table) > MAX_SYMBOLS_WITH_INTERVALS:
        return table
    for symbol, group in test_predictions.groupby("symbol", sort=True):
        intervals = metric_intervals(group, "prediction", config.horizon, FOLD_RESAMPLES, config.seed)
        table[symbol]["intervals"] = {name: [float(bound) for bound in intervals[name]]
                                      for name in ("ic", "directional_accuracy") if name in intervals}
    return table


BOOTSTRAP_RESAMPLES = 1000
# Single folds' intervals are context, not the verdict: fewer resamples keep runs short.
FOLD_RESAMPLES = 300


def _bars_per_year(calendar):
    years = (calendar[-1] - calendar[0]) / np.timedelta64(1, "D") / 365.25
    return float(len(calendar) / years) if years > 0 else 252.0
