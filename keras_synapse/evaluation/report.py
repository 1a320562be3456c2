"""The human report of a run: one self-contained `report.html`.

Plots are rendered with matplotlib (Agg backend) and embedded as base64 PNG,
so the page opens offline and can be mailed as one file.
"""

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from keras_synapse.data.plausibility import symbols_text  # noqa: E402
from keras_synapse.evaluation.summary import METRIC_NAMES, PRIMARY_LABELS  # noqa: E402


def _figure_html(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _table(header, rows):
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def kept_epoch(history, monitor):
    """The epoch early stopping kept (its best by `monitor`: the highest IC or accuracy, else the lowest)."""
    values = np.asarray(history.get(monitor, []), dtype=np.float64)
    if not len(values) or not np.isfinite(values).any():
        return None
    higher_is_better = any(part in monitor for part in ("ic", "accuracy", "correlation"))
    return int(np.nanargmax(values) if higher_is_better else np.nanargmin(values))


def training_curves(histories, monitor="val_loss"):
    """One panel per fold: training and validation loss by epoch, the validation IC, and the epoch kept."""
    figure, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3), squeeze=False)
    for axis, (title, history) in zip(axes[0], histories.items()):
        axis.plot(history.get("loss", []), label="train loss")
        axis.plot(history.get("val_loss", []), label="validation loss")
        if "val_ic" in history:
            twin = axis.twinx()
            twin.plot(history["val_ic"], color="tab:green", linestyle=":", label="validation IC")
            twin.set_ylabel("validation IC", color="tab:green")
        kept = kept_epoch(history, monitor)
        if kept is not None:
            axis.axvline(kept, color="grey", linestyle="--", linewidth=1, label=f"kept (best {monitor})")
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.legend(fontsize="small")
    figure.tight_layout()
    return _figure_html(figure)


def per_date_ic_curve(test_predictions, window=63):
    """The cross-sectional IC of each test date and its rolling mean."""
    from keras_synapse.evaluation.panel_metrics import per_timestamp_ic

    series = per_timestamp_ic(test_predictions)
    if series.empty:
        return "<p>Fewer than three symbols on every date: no cross-sectional IC.</p>"
    ic = series["ic"]
    figure, axis = plt.subplots(figsize=(9, 3))
    axis.plot(pd.DatetimeIndex(ic.index), ic.to_numpy(), linewidth=0.4, alpha=0.5, label="per date")
    axis.plot(pd.DatetimeIndex(ic.index), ic.rolling(window, min_periods=window // 2).mean().to_numpy(),
              linewidth=2, label=f"{window}-date rolling mean")
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.set_ylabel("IC across symbols")
    axis.legend(fontsize="small")
    return _figure_html(figure)


def equity_curves(equity):
    """Strategy vs buy-and-hold and baseline equity, and the strategy's drawdown."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, height_ratios=[3, 1])
    top.plot(equity.index, equity["strategy"].to_numpy(), label="model (after costs)", linewidth=2)
    top.plot(equity.index, equity["buy_and_hold"].to_numpy(), label="buy and hold")
    for column in [column for column in equity.columns if column.startswith("baseline_")]:
        top.plot(equity.index, equity[column].to_numpy(), label=column.removeprefix("baseline_"), linewidth=0.8,
                 alpha=0.7)
    top.set_ylabel("equity")
    top.legend()
    drawdown = equity["strategy"] / equity["strategy"].cummax() - 1
    bottom.fill_between(drawdown.index, drawdown.to_numpy(), 0, color="tab:red")
    bottom.set_ylabel("drawdown")
    return _figure_html(figure)


def prediction_scatter(predictions, realized, bins=20):
    """Predicted value vs realized outcome, one dot per window, with the mean outcome in prediction bins."""
    predictions, realized = np.asarray(predictions, dtype=np.float64), np.asarray(realized, dtype=np.float64)
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.scatter(predictions, realized, s=3, alpha=0.2)
    edges = np.unique(np.quantile(predictions, np.linspace(0, 1, bins + 1)))
    if len(edges) > 2:
        which = np.clip(np.searchsorted(edges, predictions, side="right") - 1, 0, len(edges) - 2)
        centres = [predictions[which == index].mean() for index in range(len(edges) - 1)]
        means = [realized[which == index].mean() for index in range(len(edges) - 1)]
        axis.plot(centres, means, color="tab:red", marker="o", linewidth=1.5, label=f"mean in {bins} prediction bins")
        axis.legend(fontsize="small")
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.axvline(0, color="grey", linewidth=0.5)
    axis.set_xlabel("prediction (the model's score)")
    axis.set_ylabel("realized (forward return or centred event outcome)")
    return _figure_html(figure)


def run_description(metrics, config):
    """What the run used: data, features, label, horizon and lag, model, folds (from its config)."""
    label = metrics["label"]
    items = [("label", f"{label['name']} ({label['kind']}), {label['horizon']}-bar horizon, execution lag "
                       f"{label.get('execution_lag', 0)}")]
    if config:
        items = [("data", config.get("data")), ("features", config.get("features")
                                                 + (f" + static {config['static_features']}"
                                                    if config.get("static_features") else "")),
                 *items, ("model", config.get("model")),
                 ("folds", f"{config.get('n_splits')} gapped walk-forward folds, test {config.get('test_size')} "
                           f"each, gap {config.get('gap')} bars"
                           + (f", sliding {config['train_bars']} bars" if config.get("train_bars") else "")),
                 ("config", "config.json beside this report")]
    return "<ul>" + "".join(f"<li><b>{html.escape(name)}</b>: {html.escape(str(value))}</li>"
                            for name, value in items) + "</ul>"


# Column titles that can wrap (metric names with underscores cannot).
COLUMN_TITLES = {"directional_accuracy": "directional accuracy", "excess_directional_accuracy": "excess accuracy",
                 "ic": "IC", "rank_ic": "rank IC", "mse": "MSE", **PRIMARY_LABELS}


def write_report(path, metrics, histories, test_predictions, equity, config=None):
    """Writes `report.html` for a run.

    Args:
        path: the output file.
        metrics: the run's `metrics.json` content.
        histories: dict fold title -> Keras `History.history`.
        test_predictions: all folds' test predictions (columns `prediction`,
            `forward_return`, `symbol`).
        equity: a frame of `strategy` and `buy_and_hold` equity by timestamp,
            or `None` when the backtest does not apply to the label.
        config: the run's config as a dict (`config.json`), for what the
            run used and which epoch early stopping kept. Defaults to `None`.
    """
    summary = metrics["summary"]
    names = [name for name in METRIC_NAMES if name in summary]
    headers = [COLUMN_TITLES.get(name, name) for name in names]
    fold_rows = [
        [fold["index"], " .. ".join(map(_when, fold["train"])), " .. ".join(map(_when, fold["test"])),
         fold["n_train"], fold["n_test"]]
        + [_with_interval(fold["metrics"][name], fold["intervals"].get(name)) for name in names]
        for fold in metrics["folds"]
    ]
    summary_rows = [
        [name, _signed(summary[name]["mean"]), _signed(summary[name]["pooled"]),
         f"[{_signed(summary[name]['ci_low'])}, {_signed(summary[name]['ci_high'])}]"]
        for name in names
    ]
    baseline_rows = [
        [name] + [_signed(result["summary"][metric]["pooled"]) for metric in names]
        for name, result in metrics["baselines"].items() if "summary" in result
    ]
    versus_rows = [[name, _signed(item.get("difference", item["ic_difference"])), f"[{_signed(item['ci_low'])}, {_signed(item['ci_high'])}]",
                    "yes" if item["beats"] else "no"] for name, item in summary["versus_baselines"].items()]
    backtest_keys = ("sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor", "turnover", "annualized_return")
    def books_table(backtest):
        return _table(["", *backtest_keys], [[name.removeprefix("baseline_")] + [_signed(backtest[name][key])
                                                                                 for key in backtest_keys]
                                             for name in backtest_books(backtest)])

    if equity is not None:
        backtest_html = books_table(metrics["backtest"]) + equity_curves(equity)
    else:
        backtest_html = f"<p>{html.escape(metrics['backtest']['skipped'])}</p>"
    if "backtest_top_k" in metrics:
        ranked = metrics["backtest_top_k"]
        backtest_html += (f"<h3>Top-{ranked['rules']['top_k']} long-short book</h3><p>{html.escape(ranked['rule'])}"
                          f"</p>{books_table(ranked)}")
    if "ab_test" in metrics["backtest"]:
        from keras_synapse.evaluation.strategy_ab import format_ab

        backtest_html += f"<h3>A/B: classical strategies alone and filtered by the model</h3><pre>" \
                         f"{html.escape(format_ab(metrics['backtest']['ab_test']).strip())}</pre>"
    if metrics.get("ensemble"):
        from keras_synapse.evaluation.agreement import format_agreement

        backtest_html += (f"<h3>Seed ensemble: the members and their agreement</h3><pre>"
                          f"{html.escape(format_agreement(metrics['ensemble']).strip())}</pre>")
    confusion_html = ""
    if "confusion_matrix" in metrics["folds"][0]["metrics"]:
        classes = metrics["label"]["classes"]
        confusion = np.sum([fold["metrics"]["confusion_matrix"] for fold in metrics["folds"]], axis=0)
        correct = np.diag(confusion)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision, recall = correct / confusion.sum(axis=0), correct / confusion.sum(axis=1)
            f1 = 2 * precision * recall / (precision + recall)
        confusion_html = "<h2>Confusion matrix (all test folds; rows true, columns predicted)</h2>" + _table(
            ["", *classes], [[name, *row] for name, row in zip(classes, confusion.tolist())]) + _table(
            ["class", "precision", "recall", "F1", "support"],
            [[name, _signed(p), _signed(r), _signed(f), int(n)]
             for name, p, r, f, n in zip(classes, precision, recall, f1, confusion.sum(axis=1))])
    per_symbol_names = [name for name in next(iter(metrics["per_symbol"].values())) if name != "intervals"]
    per_symbol_rows = [[symbol, values["n"], *(_with_interval(values[name], values.get("intervals", {}).get(name))
                                               for name in per_symbol_names[1:])]
                       for symbol, values in metrics["per_symbol"].items()]
    decay = metrics.get("ic_decay") or {}
    decay_html = ("<h2>IC decay (the test predictions against k-bar forward returns, 95% intervals)</h2>"
                  + _table(["k bars", "n", "IC", "95% CI"],
                           [[horizon, item["n"], _signed(item["ic"]), f"[{_signed(item['ci_low'])}, "
                             f"{_signed(item['ci_high'])}]"] for horizon, item in decay.items()])) if decay else ""
    importance = metrics.get("feature_importance") or {}
    first = next(iter(importance.values()), {})
    importance_label = COLUMN_TITLES.get(first.get("statistic", "ic"), "IC")
    importance_html = (f"<h2>Feature importance (test {importance_label} drop when the feature is permuted, paired "
                       f"{first.get('level', 0.95):.1%} intervals: 95% over the {len(importance)} features)</h2>"
                       + _table(["feature", "drop", "interval", "the model"],
                                [[name, _signed(item["ic_drop"]), f"[{_signed(item['ci_low'])}, "
                                  f"{_signed(item['ci_high'])}]",
                                  "uses it" if item["used"] else "loses by it" if item.get("hurts") else ""]
                                 for name, item in importance.items()])) if importance else ""
    cross_sectional = metrics["cross_sectional"]
    cross_sectional_html = (
        f"<p>Per-date IC across symbols: mean {_signed(cross_sectional['ic_mean'])} "
        f"(std {_signed(cross_sectional['ic_std'])}, ICIR {_signed(cross_sectional['icir'])}); rank IC mean "
        f"{_signed(cross_sectional['rank_ic_mean'])} (rank ICIR {_signed(cross_sectional['rank_icir'])}) over "
        f"{cross_sectional['num_timestamps']} dates.</p>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(metrics['experiment'])}</title>
<style>body{{font-family:sans-serif;max-width:1500px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:pre}}th{{white-space:normal}}
img{{max-width:100%}}</style></head><body>
<h1>{html.escape(metrics['experiment'])} — run {html.escape(metrics['run_id'])}</h1>
<p><b>{html.escape(summary['verdict'])}</b></p>
{run_description(metrics, config)}
<h2>Test folds (95% block-bootstrap intervals)</h2>
{_table(["fold", "train", "test", "n train", "n test", *headers], fold_rows)}
<h2>Summary (95% block-bootstrap intervals)</h2>{_table(["metric", "fold mean", "pooled", "95% CI"], summary_rows)}
<p>{html.escape(power_sentence(metrics))}</p>
<h2>Baselines on the same test windows (pooled)</h2>{_table(["baseline", *headers], baseline_rows)}
<h2>Model minus each baseline ({html.escape(summary.get('primary', {}).get('label', 'IC'))}, paired intervals on the
same bootstrap draws, each at the level that holds 95% over every baseline)</h2>
{_table(["baseline", f"{summary.get('primary', {}).get('label', 'IC')} difference",
          f"{next(iter(summary['versus_baselines'].values()), {}).get('level', 0.95):.1%} CI (95% over the scan)",
          "model better"], versus_rows)}
{confusion_html}
<h2>Backtest of test-fold predictions (costs {metrics['backtest']['cost_bps']} bps)</h2>
{backtest_html}
<h2>Training curves (the dashed line: the epoch early stopping kept)</h2>
{training_curves(histories, (config or {}).get("monitor", "val_loss"))}
<h2>Predicted vs realized</h2>{prediction_scatter(test_predictions["prediction"], test_predictions["reference"])}
{decay_html}
{importance_html}
<h2>Per symbol (test folds)</h2>{_table(["symbol", *per_symbol_names], per_symbol_rows)}
<h2>Cross-sectional IC</h2>{cross_sectional_html}{per_date_ic_curve(test_predictions)}
</body></html>"""
    path.write_text(page)


def _when(iso_timestamp):
    """An ISO-8601 UTC time as a reader wants it: the date alone for daily bars, else date and time."""
    moment = pd.Timestamp(iso_timestamp)
    moment = moment.tz_convert("UTC") if moment.tzinfo is not None else moment
    return moment.strftime("%Y-%m-%d") if moment == moment.normalize() else moment.strftime("%Y-%m-%d %H:%M UTC")


def _with_interval(value, interval):
    # The interval on a second line of the cell (the table keeps `white-space: pre`): a narrower table.
    return _signed(value) if interval is None else f"{_signed(value)}\n[{_signed(interval[0])}, {_signed(interval[1])}]"


def _signed(value, digits=4):
    return "   n/a" if value is None or not np.isfinite(value) else f"{value:+.{digits}f}"


def power_sentence(metrics):
    """What edge this run could have seen: its primary statistic's minimum detectable value and what it rests on."""
    summary, bootstrap = metrics["summary"], metrics["bootstrap"]
    label = summary.get("primary", {}).get("label", "IC")
    return (f"Minimum detectable {label} (80% power, 95% interval): {summary['minimum_detectable_ic']:.4f}, from "
            f"{bootstrap.get('num_windows', sum(fold['n_test'] for fold in metrics['folds']))} test windows on "
            f"{bootstrap['num_timestamps']} "
            f"dates, bootstrap blocks of {bootstrap['block_length_timestamps']:.1f} dates on average.")


def format_summary(metrics):
    """The text summary printed at the end of a run: folds, intervals, baselines, backtest, verdict."""
    summary = metrics["summary"]
    primary = summary.get("primary", {"statistic": "ic", "label": "IC"})
    short = {"per_date_rank_ic": "date rIC", "within_fold_rank_ic": "fold rIC"}.get(primary["statistic"], "")
    lines = [f"{'fold':<5}{'train':<25}{'test':<25}{'n_train':>8}{'n_test':>7}{short:>10}{'dir.acc':>9}{'IC':>9}"
             f"{'rank IC':>9}" + ("  accuracy" if "accuracy" in metrics["folds"][0]["metrics"] else "")]
    for fold in metrics["folds"]:
        values = fold["metrics"]
        test = fold.get("test_blocks", [fold["test"]])
        tested = test[0][0][:10] + ".." + test[0][1][:10] + (f" +{len(test) - 1}" if len(test) > 1 else "")
        line = (f"{fold['index']:<5}{fold['train'][0][:10] + '..' + fold['train'][1][:10]:<25}"
                f"{tested:<25}{fold['n_train']:>8}{fold['n_test']:>7}"
                f"{_signed(values[primary['statistic']]) if short else '':>10}"
                f"{_signed(values['directional_accuracy']):>9}{_signed(values['ic']):>9}{_signed(values['rank_ic']):>9}")
        if "accuracy" in values:
            line += f"{_signed(values['accuracy']):>10}"
        lines.append(line)
    if metrics.get("cv", {}).get("splitter", "walk_forward") != "walk_forward":
        lines.append(f"({metrics['cv']['description']}" + ("; +N: and N more test blocks" if any(
            len(fold.get("test_blocks", ())) > 1 for fold in metrics["folds"]) else "") + ")")
    if "heads" in metrics["folds"][0]:
        lines.append("\nhead (fold mean, labelled windows only)   n      IC   dir.acc / mse")
        for head in metrics["folds"][0]["heads"]:
            values = [fold["heads"][head] for fold in metrics["folds"]]
            last = "directional_accuracy" if "directional_accuracy" in values[0] else "mse"
            lines.append(f"{head:<38}{sum(value['n'] for value in values):>6}"
                         f"{_signed(np.nanmean([value['ic'] for value in values])):>9}"
                         f"{_signed(np.nanmean([value[last] for value in values])):>10}")
    if metrics.get("label_balance"):
        shares = ", ".join(f"{name} {share:.1%}" for name, share in metrics["label_balance"].items())
        lines.append(f"\nlabel balance (all labelled windows): {shares}")
    lines.append("\nmetric (test folds)            fold mean    pooled   95% CI (stationary block bootstrap)")
    for name in METRIC_NAMES:
        if name in summary:
            item = summary[name]
            role = "  primary" if name == primary["statistic"] else ""
            lines.append(f"{name:<30}{_signed(item['mean']):>10}{_signed(item['pooled']):>10}   "
                         f"[{_signed(item['ci_low'])}, {_signed(item['ci_high'])}]{role}")
    if "reason" in primary:
        extra = (f"; ICIR {_signed(primary['icir'], 2)} over {primary['num_dates']} dates" if "icir" in primary
                 else "")
        lines.append(f"primary statistic: {primary['label']}, chosen before training from the run's shape and strategy ("
                     f"{primary['reason']}){extra}; the other rows are secondary")
    for name in ("accuracy", "f1", "balanced_accuracy"):
        if name in summary:
            lines.append(f"{name:<30}{_signed(summary[name]['mean']):>10}")
    lines.append(power_sentence(metrics))
    versus = summary["versus_baselines"]
    level = next(iter(versus.values()), {}).get("level", 0.95)
    lines.append(f"\nbaseline (same test windows)  {short or 'primary':>9}  dir.acc   excess        IC   rank IC   "
                 f"model minus baseline, {short or 'IC'} [{level:.1%} CI: 95% over the {len(versus)} comparisons]")
    for name, result in metrics["baselines"].items():
        if "summary" not in result:
            continue
        item = result["summary"]
        value = item.get(primary["statistic"], {}).get("pooled", np.nan)
        line = (f"{name:<30}{_signed(value):>9}{_signed(item['directional_accuracy']['pooled']):>9}"
                f"{_signed(item['excess_directional_accuracy']['pooled']):>9}{_signed(item['ic']['pooled']):>10}"
                f"{_signed(item['rank_ic']['pooled']):>10}")
        if name in versus:
            difference = versus[name].get("difference", versus[name]["ic_difference"])
            line += (f"   {_signed(difference)} [{_signed(versus[name]['ci_low'])}, "
                     f"{_signed(versus[name]['ci_high'])}]{'  better' if versus[name]['beats'] else ''}")
        lines.append(line)
    if "majority_class" in metrics["baselines"]:
        majority = metrics["baselines"]["majority_class"]
        lines.append(f"majority class ({majority['class']}) accuracy {majority['accuracy']:.4f}")
    backtest = metrics["backtest"]
    if "strategy" in backtest:
        lines.append(format_books(backtest, f"backtest after {backtest['cost_bps']} bps"))
        if "backtest_top_k" in metrics:
            top_k = metrics["backtest_top_k"]["rules"]["top_k"]
            lines.append(format_books(metrics["backtest_top_k"], f"top-{top_k} long-short"))
    else:
        lines.append(f"\nbacktest: {backtest['skipped']}")
    if "ab_test" in backtest:
        from keras_synapse.evaluation.strategy_ab import format_ab

        lines.append(format_ab(backtest["ab_test"]))
    if metrics.get("ensemble"):
        from keras_synapse.evaluation.agreement import format_agreement

        lines.append(format_agreement(metrics["ensemble"]))
    if metrics.get("stack"):
        lines.append(format_stack(metrics["stack"]))
    if metrics.get("cpcv"):
        from keras_synapse.evaluation.cpcv_paths import format_paths

        lines.append("\n" + format_paths(metrics["cpcv"]))
    lines.append("\n" + format_symbol_table(metrics["per_symbol"]))
    cross_sectional = metrics["cross_sectional"]
    lines.append(f"\nper-date IC across symbols: mean {_signed(cross_sectional['ic_mean'])}, ICIR "
                 f"{_signed(cross_sectional['icir'], 2)} ({cross_sectional['num_timestamps']} dates; rank IC mean "
                 f"{_signed(cross_sectional['rank_ic_mean'])})")
    if metrics.get("ic_decay"):
        from keras_synapse.evaluation.ic_decay import format_ic_decay

        lines.append("\n" + format_ic_decay({int(k): v for k, v in metrics["ic_decay"].items()},
                                            metrics["label"]["horizon"]))
    if metrics.get("feature_importance"):
        from keras_synapse.evaluation.importance import format_importance

        lines.append("\n" + format_importance(metrics["feature_importance"]))
    lines.append(f"\n{summary['verdict']}")
    return "\n".join(lines)


def format_symbol_table(per_symbol, shown=10):
    """Each symbol's test IC and directional accuracy with their intervals; the best and worst `shown` of many."""
    def interval(values, name):
        bounds = values.get("intervals", {}).get(name)
        return f"[{_signed(bounds[0])}, {_signed(bounds[1])}]" if bounds else ""

    ordered = sorted(per_symbol.items(), key=lambda item: -np.nan_to_num(item[1]["ic"], nan=-np.inf))
    if len(ordered) > 2 * shown:
        ordered = ordered[:shown] + [None] + ordered[-shown:]
    lines = [f"{'symbol (test folds)':<22}{'n':>7}{'IC':>9}   {'95% CI':<20}{'dir.acc':>8}   95% CI"]
    for entry in ordered:
        if entry is None:
            lines.append(f"... {len(per_symbol) - 2 * shown} more symbols ...")
            continue
        symbol, values = entry
        lines.append(f"{symbol:<22}{values['n']:>7}{_signed(values['ic']):>9}   {interval(values, 'ic'):<20}"
                     f"{_signed(values['directional_accuracy']):>8}   {interval(values, 'directional_accuracy')}")
    return "\n".join(lines)


def format_stack(stack):
    """The stack's meta-learner per fold: each member's weight and out-of-fold IC."""
    lines = ["\nstack: meta-learner weights on standardized member scores (out-of-fold IC of the member)"]
    for record in stack["folds"] + ([{"fold": "final", **stack["final"]}] if stack.get("final") else []):
        parts = ", ".join(f"{member} {record['weights'][member]:+.4f} ({record['out_of_fold_ic'][member]:+.4f})"
                          for member in record["members"])
        lines.append(f"fold {record['fold']}: {parts} on {record['out_of_fold_windows']} windows")
    return "\n".join(lines)


def format_books(backtest, title):
    """A plain-text table of a backtest's books."""
    lines = [f"\n{title:<24} sharpe  sortino   max_dd  win_rate  profit_f  turnover"]
    for name in backtest_books(backtest):
        item = backtest[name]
        lines.append(f"{name.removeprefix('baseline_'):<26}{_signed(item['sharpe'], 2):>8}"
                     f"{_signed(item['sortino'], 2):>9}{_signed(item['max_drawdown'], 2):>9}"
                     f"{_signed(item['win_rate'], 2):>10}{_signed(item['profit_factor'], 2):>10}"
                     f"{_signed(item['turnover'], 2):>10}")
    for sleeve in backtest.get("sleeves", []):
        lines.append(f"  sleeve {symbols_text(sleeve['symbols'])} ({sleeve['share']:.0%} of capital, its own "
                     f"calendar, {sleeve['periods_per_year']:.0f} periods a year): strategy sharpe "
                     f"{_signed(sleeve['strategy']['sharpe'], 2)}, buy and hold "
                     f"{_signed(sleeve['buy_and_hold']['sharpe'], 2)}")
    return "\n".join(lines)


def backtest_books(backtest):
    """The backtest's books in display order: the model, buy-and-hold, then the baselines."""
    return ["strategy", "buy_and_hold", *(name for name in backtest if name.startswith("baseline_"))]
