"""Predict with a registered model on new bars.

    python -m keras_synapse.predict saved_models/shared_backbone/latest --data ./bars/ [--output preds.csv]
    python -m keras_synapse.predict saved_models/shared_backbone/3 --data sample --latest

Computes the model's features with the training code, windows them like
training, runs the model (ONNX Runtime, or Keras when the ONNX file is
missing) and prints a summary; with `--latest` only each symbol's newest
window is scored (the streaming path). When the model's metadata holds a
`drift_reference`, the input features are compared with the training ones
and drifted features are flagged.

The verdict recorded at training (whether the test folds showed a detectable
edge, the IC with its 95% interval, the minimum detectable IC) is printed on
one line after the summary, and the `--output` CSV carries it on every row:
column `edge_significant` (true/false) and column `verdict` (that sentence),
the two fields the HTTP service answers with. A model without a detectable
edge reads "No detectable edge: ..." there; a card from before verdicts were
recorded reads "No verdict recorded ...".
"""

import argparse
import logging
import sys
import time

import numpy as np
import pandas as pd


DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m keras_synapse.predict", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a registry version: saved_models/<experiment>/<version|latest>")
    parser.add_argument("--data", required=True, help="bars to predict on: 'sample', a directory of per-symbol "
                        "CSV/Parquet files, one long CSV/Parquet with a symbol column, 'yfinance:SYM,SYM' or "
                        "'alpaca:SYM,SYM'")
    parser.add_argument("--output", help="write the predictions to this CSV file, with the training verdict in "
                        "columns edge_significant and verdict")
    parser.add_argument("--latest", action="store_true", help="score only each symbol's newest window")
    parser.add_argument("--backend", choices=("onnx", "onnx_int8", "keras"), default="onnx",
                        help="model runtime. Defaults to onnx (falls back to keras when model.onnx is missing)")
    parser.add_argument("--fold", type=int, help="use cross-validation fold K's model instead of the final refit: "
                        "reproduces the training run's test-fold predictions")
    parser.add_argument("--quick", action="store_true", help="with --data sample: the small smoke-run panel")
    parser.add_argument("--drift-bars", type=int, default=0,
                        help="compare only each symbol's last N feature rows with training (0: all). Defaults to 0")
    return parser.parse_args(argv)


def main(argv=None):
    from keras_synapse.cli import run_command

    return run_command(run, parse_args(sys.argv[1:] if argv is None else argv), logging.WARNING)


def run(args):
    """Loads the model and the bars, predicts, prints the summary and drift flags; returns the predictions."""
    from keras_synapse.data import file_options, load_panel
    from keras_synapse.data.bars import build_bars
    from keras_synapse.serving.inference import Predictor

    started = time.perf_counter()
    predictor = Predictor.from_registry(args.model, backend=args.backend, fold=args.fold)
    print(f"model: {predictor.experiment} v{predictor.version} ({predictor.backend}); label "
          f"{predictor.task.label} ({predictor.task.kind}); features {predictor.inputs.feature_set}"
          + (f" + static {predictor.inputs.static_feature_set}" if predictor.inputs.static_feature_set else "")
          + f"; windows of {predictor.inputs.sequence_length} bars")
    # The model's files are read as in training: date column, column names, bad bars, adjustment.
    panel = load_panel(args.data, quick=args.quick, **file_options(predictor.metadata.get("config", {})))
    bar_spec = predictor.metadata.get("config", {}).get("bars", "")
    if bar_spec:  # the model's bars are built from the source's as in training
        panel = build_bars(panel, bar_spec)
    print(f"data: {panel!r}" + (f" (bars {bar_spec}, as the model was trained)" if bar_spec else ""))
    if args.latest:
        predictions = predictor.predict_latest(panel).assign(spacings_behind=spacings_behind(panel))
    else:
        predictions = predictor.predict_panel(panel)
    elapsed = time.perf_counter() - started
    verdict = recorded_verdict(predictor)
    print(format_summary(predictions, args.latest))
    print(f"verdict at training: {verdict['verdict']}")
    if args.output:
        predictions.reset_index().assign(**verdict).to_csv(args.output, index=False)
        print(f"predictions: {args.output} ({len(predictions)} rows)")
    print_drift(predictor, panel, args.drift_bars)
    print(f"done in {elapsed:.1f} s")
    return predictions


def recorded_verdict(predictor):
    """`{"edge_significant", "verdict"}` as the model card recorded them at training, the service's wording.

    The verdict sentence states the IC with its 95% interval; the minimum
    detectable IC is added where the sentence leaves it out (a model with an
    edge). A card without a verdict says so rather than leaving it blank.
    """
    from keras_synapse.serving.app import model_verdict

    verdict = model_verdict(predictor)
    summary = predictor.metadata.get("metrics", {}).get("summary", {})
    text = verdict["verdict"]
    if not text:
        text = ("No verdict recorded on the model card (registered before verdicts were kept, or without test "
                "folds): treat it as no detectable edge")
    elif verdict["edge_significant"] and "minimum_detectable_ic" in summary:  # the no-edge sentence states it
        label = (summary.get("primary") or {}).get("label", "IC")
        text = f"{text} Minimum detectable {label} (80% power): {summary['minimum_detectable_ic']:.4f}."
    return {"edge_significant": verdict["edge_significant"], "verdict": text}


STALE_SPACINGS = 5


def spacings_behind(panel):
    """Per symbol, how far its last bar lies behind the newest bar of the panel, in its own median bar spacing.

    A daily stock on Monday morning is 2 behind a cryptocurrency's Sunday bar,
    after a long holiday weekend 4; a feed that stopped a week ago is 7.
    """
    from keras_synapse.data.plausibility import median_spacing

    newest = panel.end
    behind = {}
    for symbol, frame in panel.items():
        spacing = median_spacing(frame.index)
        known = pd.notna(spacing) and spacing > pd.Timedelta(0)
        behind[symbol] = float((newest - frame.index[-1]) / spacing) if known else 0.0
    return pd.Series(behind, name="spacings_behind")


def format_summary(predictions, latest):
    """A short text summary of a prediction frame."""
    if latest:
        lines = [f"{'symbol':<12}{'timestamp':<27}{'score':>9}  note"]
        stale = 0
        for symbol, row in predictions.iterrows():
            notes = [f"NEUTRAL (fallback: {row['reason']})"] if row["fallback"] else []
            if row.get("spacings_behind", 0) > STALE_SPACINGS:
                stale += 1
                notes.append(f"STALE: its last bar is {row['spacings_behind']:.0f} bar spacings behind the newest "
                             "in the data")
            lines.append(f"{symbol:<12}{str(row['timestamp']):<27}{row['score']:>+9.4f}  {'; '.join(notes)}")
        fallbacks = int(predictions["fallback"].sum())
        lines.append(f"{len(predictions)} symbols, {fallbacks} neutral fallback(s), {stale} stale "
                     f"(last bar more than {STALE_SPACINGS} of its bar spacings behind the newest)")
        return "\n".join(lines)
    if len(predictions) == 0:
        return "no complete window in the data"
    scores = predictions["score"].to_numpy(dtype=np.float64)
    timestamps = predictions.index.get_level_values("timestamp")
    symbols = predictions.index.get_level_values("symbol").unique()
    return (f"{len(predictions)} windows of {len(symbols)} symbols, {timestamps.min()} .. {timestamps.max()}\n"
            f"score: mean {scores.mean():+.4f}, std {scores.std():.4f}, positive {np.mean(scores > 0):.1%}, "
            f"min {scores.min():+.4f}, max {scores.max():+.4f}")


def print_drift(predictor, panel, drift_bars=0):
    """Prints the drift table when the model's metadata has a `drift_reference`."""
    reference = predictor.metadata.get("drift_reference")
    if not reference:
        print("drift: no drift_reference in the model's metadata (re-register the model to record one)")
        return None
    from keras_synapse.serving.drift import drift_report, format_drift_report

    rows = predictor.feature_rows(panel)
    if drift_bars > 0:
        rows = rows.groupby(level="symbol", sort=False).tail(drift_bars)
    report = drift_report(reference, rows)
    print(format_drift_report(report))
    return report


if __name__ == "__main__":
    sys.exit(main())
