"""The predict command: predictions file, summary, latest windows, drift flags, clean errors."""

import subprocess
import sys

import pandas as pd
from conftest import copy_version

from keras_synapse.data import load_panel
from keras_synapse.predict import main
from keras_synapse.serving.drift import training_distributions
from keras_synapse.serving.inference import Predictor
from keras_synapse.serving.model_card import ModelCard


def test_predict_command_writes_every_window(trained_registry, tmp_path):
    output = tmp_path / "predictions.csv"
    result = subprocess.run([sys.executable, "-m", "keras_synapse.predict", str(trained_registry.parent / "latest"),
                             "--data", "sample", "--quick", "--output", str(output)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    predictions = pd.read_csv(output)
    assert list(predictions.columns) == ["symbol", "timestamp", "score", "edge_significant", "verdict"]
    # The verdict recorded at training, on every row and on one line of the console.
    summary = ModelCard.read(trained_registry)["metrics"]["summary"]
    assert (predictions["edge_significant"] == summary["edge_significant"]).all()
    assert predictions["verdict"].nunique() == 1 and predictions["verdict"][0].startswith(summary["verdict"])
    assert f"verdict at training: {predictions['verdict'][0]}" in result.stdout.splitlines()
    assert predictions["symbol"].nunique() == 6 and len(predictions) > 8000
    assert "model: shared_backbone v1 (onnx)" in result.stdout
    assert f"{len(predictions)} windows of 6 symbols" in result.stdout
    # The trainer stores the fitted rows' distributions, so predict reports drift against them.
    assert "feature drift vs training" in result.stdout and "of 11 features" in result.stdout


# Verdicts as training records them (keras_synapse.evaluation.summary.edge_verdict); predict only carries them.
NO_EDGE = ("No detectable edge: the IC's interval includes zero or less (IC +0.0040 [95% CI -0.0110, +0.0190], "
           "directional accuracy above chance +0.0010 [-0.0100, +0.0120]); an IC of 0.0312 or more would be detected "
           "with 80% power.")
EDGE = ("Detectable edge: the IC's interval lies above zero (IC +0.0500 [95% CI +0.0200, +0.0800], directional "
        "accuracy above chance +0.0150 [+0.0020, +0.0280]).")


def _summary(edge, verdict):
    return {"edge_significant": edge, "minimum_detectable_ic": 0.0312, "verdict": verdict,
            "ic": {"pooled": 0.05 if edge else 0.004, "ci_low": 0.02 if edge else -0.011,
                   "ci_high": 0.08 if edge else 0.019}}


def test_the_predictions_say_whether_the_model_had_a_detectable_edge(trained_registry, tmp_path, capsys):
    from keras_synapse.serving.app import model_verdict

    version = copy_version(trained_registry, tmp_path)
    card = ModelCard.read(version)
    output = tmp_path / "latest.csv"
    cases = [(_summary(False, NO_EDGE), False, NO_EDGE),
             (_summary(True, EDGE), True, EDGE + " Minimum detectable IC (80% power): 0.0312."),
             ({}, False, "No verdict recorded on the model card (registered before verdicts were kept, or without "
                         "test folds): treat it as no detectable edge")]
    for summary, edge, expected in cases:
        card.updated(metrics={**card["metrics"], "summary": summary}).write(version)
        assert main([str(version), "--data", "sample", "--quick", "--latest", "--output", str(output)]) == 0
        (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("verdict at training: ")]
        frame = pd.read_csv(output)  # plain read_csv: no comment lines to skip, one column more
        assert len(frame) == 6 and (frame["edge_significant"] == edge).all() and frame["verdict"].nunique() == 1
        assert line == f"verdict at training: {expected}" and frame["verdict"][0] == expected
        # The service's own words: the recorded sentence is the one /model and every answer carry.
        recorded = model_verdict(Predictor.from_registry(version))["verdict"]
        assert recorded is None or frame["verdict"][0].startswith(recorded)


def test_latest_with_drift_flags(trained_registry, tmp_path, capsys):
    # A drift reference from an earlier period (through 2016) makes 2017-2018 bars drift.
    version = copy_version(trained_registry, tmp_path)
    card = ModelCard.read(version)
    assert set(card["drift_reference"]["features"]) == set(card["feature_names"])
    predictor = Predictor.from_registry(version)
    panel = load_panel("sample", quick=True)
    rows = predictor.feature_rows(panel.truncate(pd.Timestamp("2016-12-31", tz="UTC")))
    card.updated(drift_reference=training_distributions(rows.to_numpy(), list(rows.columns))).write(version)

    assert main([str(version), "--data", "sample", "--quick", "--latest", "--drift-bars", "250"]) == 0
    output = capsys.readouterr().out
    for symbol in ("SP500", "NASDAQ", "SYN-03"):
        assert symbol in output
    assert "6 symbols, 0 neutral fallback(s), 0 stale" in output
    assert "feature drift vs training" in output
    assert "drifted" in output and "moderate of 11 features" in output


def test_latest_flags_a_symbol_whose_feed_stopped(trained_registry, tmp_path, capsys):
    panel = load_panel("sample", quick=True)
    for symbol in panel.symbols:
        bars = panel[symbol].iloc[:-10] if symbol == "SYN-03" else panel[symbol]
        bars.to_csv(tmp_path / f"{symbol}.csv")
    output = tmp_path / "latest.csv"
    assert main([str(trained_registry), "--data", str(tmp_path), "--latest", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    stale_lines = [line for line in printed.splitlines() if "STALE" in line]
    assert len(stale_lines) == 1 and stale_lines[0].startswith("SYN-03")
    # Ten business days before 2018-12-31, over Christmas: 17 days of one-day spacing.
    assert "last bar is 17 bar spacings behind the newest" in stale_lines[0]
    assert "6 symbols, 0 neutral fallback(s), 1 stale (last bar more than 5 of its bar spacings" in printed
    assert pd.read_csv(output).set_index("symbol")["spacings_behind"]["SYN-03"] == 17


def test_errors_are_clean(trained_registry, tmp_path, capsys):
    assert main([str(trained_registry), "--data", str(tmp_path / "no_such_dir")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main([str(tmp_path), "--data", "sample"]) == 2
    assert "is not a registry version" in capsys.readouterr().err

