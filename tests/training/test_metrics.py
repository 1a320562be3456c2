"""Metrics: streaming Keras metrics against NumPy over several batches, and the IC tables by hand."""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from scipy import stats

from keras_synapse.errors import DataError
from keras_synapse.evaluation.panel_metrics import information_coefficients, per_symbol_metrics, per_timestamp_ic
from keras_synapse.evaluation.summary import regression_metrics
from keras_synapse.training.metrics import DirectionalAccuracy, PearsonCorrelation

RNG = np.random.default_rng(0)
TARGETS = np.round(RNG.normal(0, 1, 200), 1).astype("float32")  # rounding leaves some exact zeros
PREDICTIONS = (0.4 * TARGETS + RNG.normal(0, 1, 200)).astype("float32")
WEIGHTS = RNG.uniform(0.1, 3.0, 200).astype("float32")
BATCH_EDGES = [0, 7, 64, 65, 130, 200]  # uneven batches, one of a single sample


def feed(metric, predictions, targets=TARGETS, weights=None):
    for start, stop in zip(BATCH_EDGES[:-1], BATCH_EDGES[1:]):
        metric.update_state(targets[start:stop, None], predictions[start:stop, None],
                            sample_weight=None if weights is None else weights[start:stop])
    return float(metric.result())


def test_directional_accuracy_matches_numpy_and_evaluation():
    moved = TARGETS != 0
    assert (~moved).sum() > 0
    agree = (PREDICTIONS > 0) == (TARGETS > 0)
    assert feed(DirectionalAccuracy(), PREDICTIONS) == pytest.approx(agree[moved].mean(), rel=1e-6)
    expected = regression_metrics(PREDICTIONS, TARGETS, TARGETS)["directional_accuracy"]
    assert feed(DirectionalAccuracy(), PREDICTIONS) == pytest.approx(expected, rel=1e-6)
    weighted = np.sum(WEIGHTS * agree * moved) / np.sum(WEIGHTS * moved)
    assert feed(DirectionalAccuracy(), PREDICTIONS, weights=WEIGHTS) == pytest.approx(weighted, rel=1e-5)


def test_pearson_correlation_is_the_correlation_over_all_batches_not_a_mean_of_batches():
    expected = np.corrcoef(PREDICTIONS, TARGETS)[0, 1]
    batch_mean = np.mean([np.corrcoef(PREDICTIONS[a:b], TARGETS[a:b])[0, 1]
                          for a, b in zip(BATCH_EDGES[:-1], BATCH_EDGES[1:]) if b - a > 2])
    value = feed(PearsonCorrelation(), PREDICTIONS)
    assert value == pytest.approx(expected, abs=1e-6)
    assert abs(batch_mean - expected) > 1e-3  # the two really differ on this data
    covariance = np.cov(PREDICTIONS, TARGETS, aweights=WEIGHTS)
    weighted = covariance[0, 1] / np.sqrt(covariance[0, 0] * covariance[1, 1])
    assert feed(PearsonCorrelation(), PREDICTIONS, weights=WEIGHTS) == pytest.approx(weighted, abs=1e-6)


def test_pearson_correlation_keeps_float32_precision_far_from_zero():
    # Predictions at 100 +- 0.01: float32 running sums of x and x**2 give 0.09 here instead of 0.298.
    shifted = (100.0 + 0.01 * PREDICTIONS).astype("float32")
    assert feed(PearsonCorrelation(), shifted) == pytest.approx(np.corrcoef(shifted, TARGETS)[0, 1], abs=1e-4)


def test_pearson_correlation_of_constants_is_zero_and_reset_starts_over():
    metric = PearsonCorrelation()
    assert float(metric.result()) == 0.0
    assert feed(metric, np.zeros(200, "float32")) == 0.0
    metric.reset_state()
    assert feed(metric, PREDICTIONS) == pytest.approx(np.corrcoef(PREDICTIONS, TARGETS)[0, 1], abs=1e-6)


def test_compiled_metrics_report_epoch_values_over_all_validation_samples():
    keras.utils.set_random_seed(0)
    features = RNG.normal(0, 1, (200, 3)).astype("float32")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.Adam(0.01), loss="mse", metrics=[PearsonCorrelation(), DirectionalAccuracy()])
    validation = tf.data.Dataset.from_tensor_slices((features, TARGETS[:, None])).batch(32)
    history = model.fit(features, TARGETS[:, None], batch_size=32, epochs=1, validation_data=validation,
                        verbose=0).history
    predictions = model.predict(features, verbose=0).ravel()
    assert history["val_pearson_correlation"][0] == pytest.approx(np.corrcoef(predictions, TARGETS)[0, 1], abs=1e-5)
    moved = TARGETS != 0
    accuracy = np.mean((predictions[moved] > 0) == (TARGETS[moved] > 0))
    assert history["val_directional_accuracy"][0] == pytest.approx(accuracy, abs=1e-6)


def test_metric_configs_round_trip_through_keras_serialization():
    for metric in (DirectionalAccuracy(name="da"), PearsonCorrelation(name="corr")):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
        assert type(restored) is type(metric) and restored.get_config() == metric.get_config()
    assert PearsonCorrelation().get_config() == {"name": "pearson_correlation", "dtype": "float32"}


def panel_frame():
    """Four dates: 4 symbols, 4 symbols, 2 symbols (skipped), 3 symbols with constant predictions (skipped)."""
    rows = [
        ("2024-01-02", "A", 0.1, 0.02), ("2024-01-02", "B", 0.3, 0.01), ("2024-01-02", "C", -0.2, -0.03),
        ("2024-01-02", "D", 0.0, 0.00),
        ("2024-01-03", "A", 0.5, -0.01), ("2024-01-03", "B", 0.1, 0.02), ("2024-01-03", "C", 0.2, 0.01),
        ("2024-01-03", "D", np.nan, 0.05),  # dropped row: the date keeps 3 symbols
        ("2024-01-04", "A", 0.4, 0.01), ("2024-01-04", "B", 0.2, -0.01),
        ("2024-01-05", "A", 0.3, 0.01), ("2024-01-05", "B", 0.3, -0.02), ("2024-01-05", "C", 0.3, 0.03),
    ]
    frame = pd.DataFrame(rows, columns=["timestamp", "symbol", "prediction", "reference"])
    return frame.assign(timestamp=pd.to_datetime(frame["timestamp"], utc=True))


def test_per_timestamp_ic_by_hand():
    frame = panel_frame()
    series = per_timestamp_ic(frame)
    assert list(series.index) == list(pd.to_datetime(["2024-01-02", "2024-01-03"], utc=True))
    for timestamp, part in frame.dropna().groupby("timestamp"):
        if timestamp in series.index:
            assert series.loc[timestamp, "ic"] == pytest.approx(stats.pearsonr(part.prediction, part.reference)[0])
            assert series.loc[timestamp, "rank_ic"] == pytest.approx(
                stats.spearmanr(part.prediction, part.reference)[0])
    assert series["num_symbols"].tolist() == [4, 3]


def test_information_coefficients_summary():
    frame = panel_frame()
    series = per_timestamp_ic(frame)
    summary = information_coefficients(frame)
    assert summary["num_timestamps"] == 2
    assert summary["ic_mean"] == pytest.approx(series["ic"].mean())
    assert summary["ic_std"] == pytest.approx(series["ic"].std(ddof=1))
    assert summary["icir"] == pytest.approx(series["ic"].mean() / series["ic"].std(ddof=1))
    assert summary["rank_icir"] == pytest.approx(series["rank_ic"].mean() / series["rank_ic"].std(ddof=1))
    single = information_coefficients(frame[frame.symbol == "A"])
    assert single["num_timestamps"] == 0 and np.isnan(single["ic_mean"]) and np.isnan(single["icir"])
    with pytest.raises(DataError, match=r"lacks column\(s\) \['score'\]"):
        information_coefficients(frame, prediction_column="score")


def test_information_coefficients_on_a_random_panel_agree_with_scipy():
    timestamps = np.repeat(pd.date_range("2024-01-01", periods=30, tz="UTC"), 8)
    reference = RNG.normal(0, 1, len(timestamps))
    frame = pd.DataFrame({"timestamp": timestamps, "symbol": np.tile(list("ABCDEFGH"), 30),
                          "reference": reference, "prediction": 0.5 * reference + RNG.normal(0, 1, len(timestamps))})
    per_date = [stats.pearsonr(part.prediction, part.reference)[0] for _, part in frame.groupby("timestamp")]
    summary = information_coefficients(frame)
    assert summary["num_timestamps"] == 30
    assert summary["ic_mean"] == pytest.approx(np.mean(per_date))
    assert summary["icir"] == pytest.approx(np.mean(per_date) / np.std(per_date, ddof=1))


def test_per_symbol_metrics_table_uses_the_headline_definitions():
    frame = pd.concat([panel_frame().assign(target=lambda f: f.reference * 10)] * 2, ignore_index=True).dropna()
    frame = frame[frame.symbol != "D"]  # D never moves: its directional accuracy is undefined
    table = per_symbol_metrics(frame, target_column="target")
    assert list(table.index) == ["A", "B", "C"]
    part = frame[frame.symbol == "A"]
    expected = regression_metrics(part.prediction, part.target, part.reference)
    assert table.loc["A", "n"] == len(part)
    for name, value in expected.items():
        assert table.loc["A", name] == pytest.approx(value, nan_ok=True)
    assert "mse" not in per_symbol_metrics(frame).columns
