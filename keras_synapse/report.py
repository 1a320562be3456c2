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

from keras_synapse.evaluation import METRIC_NAMES  # noqa: E402


def _figure_html(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _number(value):
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.4f}"


def _table(header, rows):
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def training_curves(histories):
    """One panel per fold: training and validation loss by epoch."""
    figure, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3), squeeze=False)
    for axis, (title, history) in zip(axes[0], histories.items()):
        axis.plot(history.get("loss", []), label="train")
        axis.plot(history.get("val_loss", []), label="validation")
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.legend()
    return _figure_html(figure)


def equity_curves(equity):
    """Strategy vs buy-and-hold equity, and the strategy's drawdown."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, height_ratios=[3, 1])
    top.plot(equity.index, equity["strategy"].to_numpy(), label="model (after costs)")
    top.plot(equity.index, equity["buy_and_hold"].to_numpy(), label="buy and hold")
    top.set_ylabel("equity")
    top.legend()
    drawdown = equity["strategy"] / equity["strategy"].cummax() - 1
    bottom.fill_between(drawdown.index, drawdown.to_numpy(), 0, color="tab:red")
    bottom.set_ylabel("drawdown")
    return _figure_html(figure)


def prediction_scatter(predictions, realized):
    """Predicted value vs realized forward return."""
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.scatter(predictions, realized, s=3, alpha=0.3)
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.axvline(0, color="grey", linewidth=0.5)
    axis.set_xlabel("prediction")
    axis.set_ylabel("realized forward log return")
    return _figure_html(figure)


def write_report(path, metrics, histories, test_predictions, equity):
    """Writes `report.html` for a run.

    Args:
        path: the output file.
        metrics: the run's `metrics.json` content.
        histories: dict fold title -> Keras `History.history`.
        test_predictions: all folds' test predictions (columns `prediction`,
            `forward_return`, `symbol`).
        equity: a frame of `strategy` and `buy_and_hold` equity by timestamp.
    """
    summary = metrics["summary"]
    fold_rows = [
        [fold["index"], " .. ".join(fold["train"]), " .. ".join(fold["test"]), fold["n_train"], fold["n_test"]]
        + [_number(fold["metrics"][name]) for name in METRIC_NAMES]
        for fold in metrics["folds"]
    ]
    summary_rows = [
        [name, _number(summary[name]["mean"]), _number(summary[name]["pooled"]),
         f"[{_number(summary[name]['ci_low'])}, {_number(summary[name]['ci_high'])}]"]
        for name in METRIC_NAMES
    ]
    baseline_rows = [
        [name] + [_number(result["summary"][metric]["pooled"]) for metric in METRIC_NAMES]
        for name, result in metrics["baselines"].items()
    ]
    backtest_rows = [
        [name] + [_number(metrics["backtest"][name][key]) for key in ("sharpe", "sortino", "max_drawdown",
                                                                      "win_rate", "profit_factor", "turnover",
                                                                      "annualized_return")]
        for name in ("strategy", "buy_and_hold")
    ]
    per_symbol = test_predictions.groupby("symbol").apply(
        lambda group: np.corrcoef(group["prediction"], group["forward_return"])[0, 1] if len(group) > 2 else np.nan,
        include_groups=False,
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(metrics['experiment'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>{html.escape(metrics['experiment'])} — run {html.escape(metrics['run_id'])}</h1>
<p><b>{html.escape(summary['verdict'])}</b></p>
<h2>Test folds</h2>{_table(["fold", "train", "test", "n_train", "n_test", *METRIC_NAMES], fold_rows)}
<h2>Summary (95% block-bootstrap intervals)</h2>{_table(["metric", "fold mean", "pooled", "95% CI"], summary_rows)}
<h2>Baselines on the same test windows (pooled)</h2>{_table(["baseline", *METRIC_NAMES], baseline_rows)}
<h2>Backtest of test-fold predictions (costs {metrics['backtest']['cost_bps']} bps)</h2>
{_table(["", "sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor", "turnover", "annualized_return"],
        backtest_rows)}
{equity_curves(equity)}
<h2>Training curves</h2>{training_curves(histories)}
<h2>Predicted vs realized</h2>{prediction_scatter(test_predictions["prediction"], test_predictions["forward_return"])}
<h2>Per-symbol IC (test folds)</h2>{_table(["symbol", "IC"], [[symbol, _number(value)] for symbol, value in per_symbol.items()])}
</body></html>"""
    path.write_text(page)

