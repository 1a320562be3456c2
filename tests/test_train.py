"""The main command end to end, as a user runs it: offline sample, own CSVs, bad data."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.data import load_panel
from keras_synapse.errors import SynapseError
from keras_synapse.serving.inference import Predictor

EXPERIMENT = "experiments/shared_backbone.py"


def run_train(*arguments, cwd):
    return subprocess.run(
        [sys.executable, "-m", "keras_synapse.train", *arguments],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, request):
    root = request.config.rootpath
    workdir = tmp_path_factory.mktemp("quick")
    result = run_train(str(root / EXPERIMENT), "--quick", "--set", "feature_importance=true",
                       "--output", str(workdir / "runs"), "--registry", str(workdir / "saved_models"), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (workdir / "runs" / "shared_backbone").iterdir()
    return workdir, run_dir, result


def test_quick_run_is_a_challenger_and_says_each_phase_without_tensorflow_noise(quick_run):
    workdir, run_dir, result = quick_run
    # A smoke run never creates or moves `latest` (what `live` and `serve ... latest` use).
    assert (workdir / "saved_models" / "shared_backbone" / "1" / "model.keras").is_file()
    assert not (workdir / "saved_models" / "shared_backbone" / "latest").exists()
    assert "as a challenger (a --quick run): `latest` is unchanged" in result.stdout
    # The request echoed once, the data bound stated, each fold announced before its epochs.
    assert result.stdout.count("experiment: ") == 1 and "--quick with feature_importance=true" in result.stdout
    assert "quick: the experiment's own smoke-sized data, 6 symbol(s), 9000 bars" in result.stdout
    for position in (1, 2, 3):
        assert result.stdout.index(f"fold {position}/3: fit on ") < result.stdout.index("Epoch 1/", result.stdout.index(
            f"fold {position}/3: fit on "))
        assert f"fold {position}/3: baselines on the same windows: done in" in result.stderr
    for phase in ("evaluation: intervals", "register: model.keras, ONNX export", "report.html"):
        assert f"{phase}" in result.stderr
    # TensorFlow's native start-up lines (CUDA probing on a CPU machine, oneDNN notes) are silenced.
    for noise in ("absl::InitializeLog", "cuInit", "cuda drivers", "oneDNN", "I0000", "E0000", "W0000"):
        assert noise not in result.stderr, noise


def test_quick_run_writes_the_contracted_metrics(quick_run):
    _, run_dir, result = quick_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["folds"]) == 3
    for fold in metrics["folds"]:
        assert fold["train"][1] < fold["test"][0]  # train ends before test starts
        assert fold["n_train"] > 0 and fold["n_test"] > 0
        assert {"directional_accuracy", "ic", "rank_ic", "mse"} <= set(fold["metrics"])
        assert all(low <= high for low, high in fold["intervals"].values()) and "ic" in fold["intervals"]
    for name in ("directional_accuracy", "ic", "rank_ic", "mse"):
        item = metrics["summary"][name]
        assert item["ci_low"] <= item["pooled"] <= item["ci_high"]
    summary = metrics["summary"]
    assert isinstance(summary["edge_significant"], bool)
    # The primary statistic, fixed by the run's strategy (each symbol by its own score's sign), alone decides.
    primary = summary["primary"]
    assert primary["statistic"] == "within_fold_rank_ic" and "a time-series strategy" in primary["reason"]
    assert summary["edge_significant"] == (summary["within_fold_rank_ic"]["ci_low"] > 0)
    assert primary["value"] == summary["within_fold_rank_ic"]["pooled"]
    assert set(metrics["baselines"]) == {"always_up", "momentum", "ridge", "ridge_window", "lightgbm", "random"}
    # How large an edge the run could have seen, and the model against every baseline with a defined IC.
    assert 0 < summary["minimum_detectable_ic"] < 1
    assert set(summary["versus_baselines"]) == {"momentum", "ridge", "ridge_window", "lightgbm", "random"}
    for name, item in summary["versus_baselines"].items():
        baseline_value = metrics["baselines"][name]["summary"]["within_fold_rank_ic"]["pooled"]
        assert item["difference"] == pytest.approx(summary["within_fold_rank_ic"]["pooled"] - baseline_value)
        assert item["ci_low"] <= item["difference"] <= item["ci_high"]
        assert item["beats"] == (item["ci_low"] > 0) and item["level"] == pytest.approx(1 - 0.05 / 5)
    assert summary["best_baseline"] in summary["versus_baselines"]
    # The model, buy-and-hold and every baseline trade under the same rules.
    assert metrics["backtest"]["same_books"] == {"baseline_always_up": "buy_and_hold"}  # not drawn twice
    assert "baseline_always_up" not in metrics["backtest"]
    for book in ("strategy", "buy_and_hold", *(f"baseline_{name}" for name in metrics["baselines"]
                                               if name != "always_up")):
        assert {"sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor", "turnover"} <= set(
            metrics["backtest"][book]
        )
    predictions = pd.read_csv(run_dir / "test_predictions.csv")
    assert set(metrics["per_symbol"]) == set(predictions["symbol"])
    assert sum(row["n"] for row in metrics["per_symbol"].values()) == len(predictions)
    for row in metrics["per_symbol"].values():  # each symbol's IC with its own interval, printed too
        low, high = row["intervals"]["ic"]
        assert low <= row["ic"] <= high
    assert "symbol (test folds)" in result.stdout and "SYN-00" in result.stdout.split("symbol (test folds)")[1]
    cross_sectional = metrics["cross_sectional"]
    assert 0 < cross_sectional["num_timestamps"] <= predictions["timestamp"].nunique()
    assert cross_sectional["icir"] == pytest.approx(cross_sectional["ic_mean"] / cross_sectional["ic_std"])
    assert json.loads((run_dir / "config.json").read_text())["name"] == "shared_backbone"
    assert "<img src=\"data:image/png;base64," in (run_dir / "report.html").read_text()
    assert list((run_dir / "tensorboard" / "fold_0").rglob("events.out.tfevents.*"))
    # Each fold's test metrics sit beside its training curves in TensorBoard.
    import tensorflow as tf

    (events,) = (run_dir / "tensorboard" / "fold_1" / "test").glob("events.out.tfevents.*")
    logged = {value.tag: float(tf.make_ndarray(value.tensor)) for event in tf.compat.v1.train.summary_iterator(
        str(events)) for value in event.summary.value}
    fold = metrics["folds"][1]
    assert logged["epoch_ic"] == pytest.approx(fold["metrics"]["ic"], rel=1e-6)  # the validation IC's tag
    assert logged["epoch_ic_ci_low"] == pytest.approx(fold["intervals"]["ic"][0], rel=1e-6)
    # ... at the epoch early stopping kept, not the last one trained.
    from keras_synapse.training.callbacks import read_checkpoint

    stopping = read_checkpoint(run_dir / "checkpoints" / "fold_1")["callbacks"][0]
    assert {event.step for event in tf.compat.v1.train.summary_iterator(str(events)) if event.summary.value} == {
        stopping["best_epoch"]}
    # The printed summary shows the fold table and says whether there is an edge.
    assert "fold train" in result.stdout and "detectable edge" in result.stdout
    assert (f"Minimum detectable within-fold rank IC (80% power, 95% interval): "
            f"{summary['minimum_detectable_ic']:.4f}" in result.stdout)
    assert "model minus baseline, fold rIC [99.0% CI: 95% over the 5 comparisons]" in result.stdout
    assert "primary statistic: within-fold rank IC, chosen before training" in result.stdout
    assert "per-date IC across symbols" in result.stdout and "momentum" in result.stdout.split("backtest after")[1]
    # Permutation importance of every input feature, with its interval, printed and in the report.
    importance = metrics["feature_importance"]
    assert len(importance) == 11 and all(item["ci_low"] <= item["ic_drop"] <= item["ci_high"]
                                         for item in importance.values())
    assert "feature importance (test within-fold rank IC drop when permuted)" in result.stdout
    assert "99.5% CI (95% over the 11 features)" in result.stdout
    report = (run_dir / "report.html").read_text()
    assert "Feature importance" in report and "<b>data</b>: sample" in report and "execution lag 0" in report
    assert "the epoch early stopping kept" in report and report.count("<img") == 4  # equity, training curves, scatter, per-date IC
    assert "permuted:log_return_1" not in predictions.columns  # the predictions file keeps its columns


def test_registered_model_loads_without_keras_synapse_and_matches_onnx(quick_run, tmp_path):
    workdir, run_dir, _ = quick_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    version_dir = workdir / "saved_models" / "shared_backbone" / "1"
    assert (version_dir / "model.keras").is_file() and metrics["model"]["onnx"].endswith("model.onnx")
    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert metadata["label"]["horizon"] == 5 and len(metadata["normalization"]["sequence"]["mean"]) == 11
    # Raw (unnormalized) feature windows from the sample, computed here ...
    from keras_synapse.data import load_panel
    from keras_synapse.features import compute_features

    features = compute_features(load_panel("sample", quick=True), metadata["feature_set"])
    windows = np.stack([frame.to_numpy("float32")[-20 - offset:len(frame) - offset]
                        for frame in features.values() for offset in range(0, 40, 5)])
    np.save(tmp_path / "windows.npy", windows)
    # ... and predicted in a fresh process that never imports keras_synapse.
    script = textwrap.dedent(f"""
        import sys, numpy as np, keras, onnxruntime
        windows = np.load({str(tmp_path / 'windows.npy')!r})
        model = keras.models.load_model({str(version_dir / 'model.keras')!r})
        keras_out = model.predict({{"sequence": windows}}, verbose=0)
        session = onnxruntime.InferenceSession({str(version_dir / 'model.onnx')!r})
        onnx_out = session.run(None, {{"sequence": windows}})[0]
        assert "keras_synapse" not in sys.modules
        print(float(np.abs(keras_out - onnx_out).max()), float(keras_out.std()))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    max_difference, spread = map(float, result.stdout.split()[-2:])
    assert max_difference <= 1e-4
    assert spread > 0  # the model does respond to its inputs


def test_own_csv_directory(tmp_path, request):
    bars_dir = tmp_path / "bars"
    bars_dir.mkdir()
    for seed, symbol in enumerate(("AAA", "BBB", "CCC")):
        make_bars(700, seed=seed).reset_index().to_csv(bars_dir / f"{symbol}.csv", index=False)
    result = run_train(str(request.config.rootpath / EXPERIMENT), "--quick", "--data", str(bars_dir),
                       "--output", str(tmp_path / "runs"), "--registry", str(tmp_path / "models"),
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = json.loads((tmp_path / "models" / "shared_backbone" / "1" / "metadata.json").read_text())
    assert metadata["data"]["symbols"] == ["AAA", "BBB", "CCC"]
    # `predict` on the same CSVs with the last fold's model reproduces that fold's test predictions.
    output = tmp_path / "predictions.csv"
    predicted = subprocess.run(
        [sys.executable, "-m", "keras_synapse.predict", str(tmp_path / "models" / "shared_backbone" / "1"),
         "--data", str(bars_dir), "--fold", "2", "--output", str(output)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "shared_backbone").iterdir()
    expected = pd.read_csv(run_dir / "test_predictions.csv").query("fold == 2")
    actual = pd.read_csv(output).merge(expected[["symbol", "timestamp", "prediction"]], on=["symbol", "timestamp"])
    assert len(actual) == len(expected) > 50
    np.testing.assert_allclose(actual["score"], actual["prediction"], atol=1e-5)


def test_sliding_walk_forward_execution_lag_ic_decay_and_top_k(tmp_path, request):
    """`--set train_bars=N`: every fold, and the final refit, train on the N bars before their gap;
    `--set execution_lag=1`: labels and trades enter a bar after the signal; `--set horizons=1,3,5`: the IC-decay
    table; `--set top_k=2`: the long-short book; `--set label_cross_section=rank` and cross-sectional inputs (one
    run checks them all, to save CI time)."""
    result = run_train(str(request.config.rootpath / EXPERIMENT), "--quick", "--set", "train_bars=400",
                       "--set", "execution_lag=1", "--set", "gap=6", "--set", "horizons=1,3,5", "--set", "top_k=2",
                       "--set", "label_cross_section=rank", "--set", "universe_features=true",
                       "--set", "feature_cross_section=rank",
                       "--output", str(tmp_path / "runs"), "--registry", str(tmp_path / "models"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "shared_backbone").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["label"]["execution_lag"] == 1 and metrics["backtest"]["rules"]["execution_lag"] == 1
    assert "entered at the open 1 bar(s) after the signal" in metrics["backtest"]["rule"]
    assert metrics["label"]["cross_section"] == "rank"  # targets ranked per date; ICs still on raw returns
    # Cross-sectional inputs: universe-relative columns, every feature ranked per date; predict scores the
    # universe, the service (one symbol at a time) refuses the model in one line.
    card = json.loads((tmp_path / "models" / "shared_backbone" / "1" / "metadata.json").read_text())
    assert card["feature_names"][-3:] == ["log_return_1_vs_universe", "log_return_20_vs_universe",
                                          "volume_zscore_20_vs_universe"]
    predictor = Predictor.from_registry(tmp_path / "models" / "shared_backbone" / "1")
    latest = predictor.predict_latest(load_panel("sample", quick=True))
    assert len(latest) == 6 and not latest["fallback"].any() and latest["score"].notna().all()
    with pytest.raises(SynapseError, match="trained on cross-sectional inputs .* Score it with `predict`"):
        predictor.stream()
    # --set top_k=2: a dollar-neutral long-short book on the ranking, beside the per-symbol one.
    ranked = metrics["backtest_top_k"]
    assert ranked["rules"]["signal"] == "top_k" and ranked["rules"]["execution_lag"] == 1
    assert {"strategy", "buy_and_hold", "baseline_momentum"} <= set(ranked) and "top-2 long-short" in result.stdout
    # --set horizons=1,3,5: the IC-decay table, printed and in metrics.json.
    assert list(metrics["ic_decay"]) == ["1", "3", "5"] and "IC decay" in result.stdout
    assert "(trained horizon)" in [line for line in result.stdout.splitlines() if line.strip().startswith("5 ")][0]
    # The gap must cover the lagged label: refused before any run directory exists.
    refused = run_train(str(request.config.rootpath / EXPERIMENT), "--quick", "--set", "execution_lag=1",
                        "--output", str(tmp_path / "refused"), cwd=tmp_path)
    assert refused.returncode == 2 and "`gap` must be >= `horizon` (5) + `execution_lag` (1)" in refused.stderr
    assert not (tmp_path / "refused").exists()
    calendar = load_panel("sample", quick=True)
    calendar = pd.DatetimeIndex(sorted(set().union(*(calendar[symbol].index for symbol in calendar.symbols))))
    counts = [((calendar >= fold["train"][0]) & (calendar <= fold["train"][1])).sum() for fold in metrics["folds"]]
    assert counts == [400, 400, 400]
    # Equal windows in, roughly equal fit windows out (expanding folds would grow by the test block each time).
    fit_windows = [fold["n_train"] for fold in metrics["folds"]]
    assert max(fit_windows) - min(fit_windows) < 0.1 * max(fit_windows)
    assert "final refit" in result.stdout


@pytest.mark.parametrize("cv", ["purged_kfold", "cpcv"])
def test_purged_splitters_run_from_the_experiment(tmp_path, request, cv):
    """`--set cv=purged_kfold`: each block tested once, trained on both sides; `--set cv=cpcv`: the backtest paths."""
    # The k-fold run also builds dollar bars from the sample's daily bars (`--set bars=dollar:2x`) and trains
    # a seed ensemble of two; the CPCV run trades a strategy from the experiment (the design's filter,
    # quarter-Kelly, a 30% stop). Its threshold is 0.5, so the books trade: a one-epoch model on the sample has
    # no edge, and its calibrated win probability rarely clears the design's 0.6.
    bars = ["--set", "bars=dollar:2x", "--set", "ensemble_seeds=2"] if cv == "purged_kfold" else [
        "--set", "strategy=signal=meta_label;primary_side_column=rsi_reversion;sizing=kelly;drawdown_limit=0.3;"
                 "confidence_threshold=0.5"]
    result = run_train(str(request.config.rootpath / EXPERIMENT), "--quick", "--epochs", "1", "--set", f"cv={cv}",
                       "--set", "cv_groups=4", "--set", "embargo=5", *bars,
                       "--output", str(tmp_path / "runs"), "--registry", str(tmp_path / "models"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "shared_backbone").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    predictions = pd.read_csv(run_dir / "test_predictions.csv")
    assert metrics["cv"]["splitter"] == cv and metrics["cv"]["embargo"] == 5
    assert not predictions.duplicated(["symbol", "timestamp"]).any()  # the pooled figures count a window once
    if cv == "purged_kfold":
        assert len(metrics["folds"]) == 3 and sum(fold["n_test"] for fold in metrics["folds"]) == len(predictions)
        assert "purged k-fold: 3 time blocks" in result.stdout and "not a walk-forward result" in result.stdout
        assert "bars: dollar:2x built from the source's 9000 bars:" in result.stdout
        card = json.loads((tmp_path / "models" / "shared_backbone" / "1" / "metadata.json").read_text())
        assert card["data"]["bars"] == "dollar:2x" and card["config"]["bars"] == "dollar:2x"
        # The ensemble is one model (registered past the ONNX parity gate); its members' scores ride along.
        ensemble = metrics["ensemble"]
        assert ensemble["members"] == 2 and len(ensemble["member_ic"]) == 2 and 0.5 <= ensemble["mean_agreement"] <= 1
        assert {"member_0", "member_1"} <= set(predictions.columns)
        np.testing.assert_allclose(predictions[["member_0", "member_1"]].mean(axis=1), predictions["prediction"],
                                   atol=1e-5)
        assert "seed ensemble of 2: member ICs" in result.stdout
        # predict builds the same bars from the source's before scoring.
        predicted = subprocess.run([sys.executable, "-m", "keras_synapse.predict", str(tmp_path / "models" /
                                    "shared_backbone" / "1"), "--data", "sample", "--quick", "--latest"],
                                   capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        assert "(bars dollar:2x, as the model was trained)" in predicted.stdout
        return
    rules = metrics["backtest"]["rules"]
    assert (rules["signal"], rules["primary_side_column"], rules["sizing"], rules["drawdown_limit"]) == (
        "meta_label", "classical_rsi_reversion", "kelly", 0.3)
    assert metrics["backtest"]["rule"].startswith("strategy signal=meta_label;")
    ab = metrics["backtest"]["ab_test"]  # the rules used and one book per strategy of the A/B
    assert ab["books"]["rsi_reversion_filtered"]["num_periods"] > 0 and "model - " in "".join(ab["sharpe_differences"])
    paths = metrics["cpcv"]
    assert len(metrics["folds"]) == 6 and paths["num_paths"] == 3 and len(paths["paths"]) == 3
    assert all(path["n"] == len(predictions) for path in paths["paths"])
    assert paths["paths"][0]["ic"] == pytest.approx(metrics["summary"]["ic"]["pooled"], abs=1e-9)
    assert paths["ic"]["min"] <= paths["ic"]["mean"] <= paths["ic"]["max"]
    assert "CPCV backtest paths (3; the summary above is path 0's)" in result.stdout
    assert f"from {len(predictions)} test windows on" in result.stdout  # the power is path 0's
    assert "sharpe over paths: mean" in result.stdout


def test_a_close_only_panel_trains_with_the_close_feature_set(tmp_path, request):
    """Dates and closes, the commonest free data: the default features are refused by name, `close` trains."""
    bars_dir = tmp_path / "bars"
    bars_dir.mkdir()
    for seed, symbol in enumerate(("AAA", "BBB", "CCC")):
        make_bars(700, seed=seed)[["close"]].rename(columns={"close": "Close"}).to_csv(bars_dir / f"{symbol}.csv")
    arguments = [str(request.config.rootpath / EXPERIMENT), "--quick", "--data", str(bars_dir),
                 "--output", str(tmp_path / "runs"), "--registry", str(tmp_path / "models")]
    refused = run_train(*arguments, cwd=tmp_path)
    assert refused.returncode == 2 and "3 symbol(s) hold closes only (AAA, BBB, CCC" in refused.stderr
    assert "--set features=close" in refused.stderr and "Traceback" not in refused.stderr
    result = run_train(*arguments, "--set", "features=close", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = json.loads((tmp_path / "models" / "shared_backbone" / "1" / "metadata.json").read_text())
    assert metadata["inputs"]["sequence"]["feature_names"] == ["log_return_1", "log_return_5", "log_return_20",
                                                                "realized_volatility_20", "close_to_mean_20",
                                                                "scaled_return_1", "scaled_return_5",
                                                                "scaled_return_20"]


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda bars: bars.assign(close=bars["close"].where(bars.index != bars.index[40], -1.0)),
         "error: Symbol 'BAD', column 'close': non-positive price at 2024-02-26"),
        (lambda bars: bars.iloc[:30], "error: History too short"),
    ],
)
def test_bad_data_gets_a_clear_error_and_no_traceback(tmp_path, request, corrupt, message):
    bars_dir = tmp_path / "bars"
    bars_dir.mkdir()
    corrupt(make_bars(300)).reset_index().to_csv(bars_dir / "BAD.csv", index=False)
    result = run_train(str(request.config.rootpath / EXPERIMENT), "--quick", "--data", str(bars_dir),
                       "--output", str(tmp_path / "runs"), "--registry", str(tmp_path / "models"), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()  # nothing half-registered
