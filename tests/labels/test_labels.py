"""Labels: hand-checked values and end times, no look-ahead for every label, errors that say what was received."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

import keras_synapse.labels.patterns as pattern_labels
from keras_synapse.data.panel import Panel
from keras_synapse.errors import ConfigError
from keras_synapse.labels import LABELS, compute_labels, label_options
from keras_synapse.labels.barriers import meta_label, triple_barrier_label
from keras_synapse.labels.patterns import (
    momentum_persistence_label,
    trend_exhaustion_label,
    volatility_regime_shift_label,
    volume_divergence_label,
)
from keras_synapse.labels.returns import direction_binary_label, direction_label, forward_return_label


def bars_from_closes(closes, highs=None, lows=None, volumes=None):
    """Bars with the given closes; high/low a 0.1% band around the close unless given."""
    closes = np.asarray(closes, dtype=float)
    index = pd.date_range("2024-01-01", periods=len(closes), freq="B", tz="UTC", name="timestamp")
    highs = closes * np.exp(0.001) if highs is None else np.asarray(highs, dtype=float)
    lows = closes * np.exp(-0.001) if lows is None else np.asarray(lows, dtype=float)
    volumes = np.full(len(closes), 1e6) if volumes is None else np.asarray(volumes, dtype=float)
    return pd.DataFrame({"open": closes, "high": highs, "low": lows, "close": closes, "volume": volumes}, index=index)


def alternating_closes(num_bars, step=0.01):
    """Closes whose daily log returns alternate +step, -step: trailing sigma = step * sqrt(20 / 19)."""
    return 100 * np.exp(step * (np.arange(num_bars) % 2))


# --- Returns and directions ---------------------------------------------------


@pytest.mark.parametrize("horizon", [1, 3, 5])
def test_forward_return_over_the_seed_horizons(horizon):
    bars = make_bars(60)
    label = forward_return_label(bars, horizon=horizon, scaling="none")
    close = bars["close"].to_numpy()
    np.testing.assert_allclose(label.values.iloc[10], np.log(close[10 + horizon] / close[10]))
    assert label.end_time.iloc[10] == bars.index[10 + horizon]
    assert label.values.iloc[-horizon:].isna().all() and label.end_time.iloc[-horizon:].isna().all()
    assert label.kind == "regression" and label.classes == ()


def test_direction_with_a_fixed_band():
    # Forward 1-bar log returns: +0.2%, +1%, -1%, 0, -0.4%.
    closes = 100 * np.exp(np.cumsum([0, 0.002, 0.01, -0.01, 0.0, -0.004]))
    label = direction_label(bars_from_closes(closes), horizon=1, flat_band="fixed", flat_return=0.005)
    np.testing.assert_array_equal(label.values.to_numpy(), [1, 2, 0, 1, 1, np.nan])
    assert label.classes == ("DOWN", "FLAT", "UP") and label.kind == "multiclass"


def test_direction_band_is_a_multiple_of_trailing_volatility():
    bars = make_bars(80, seed=4)
    label = direction_label(bars, horizon=5, flat_multiple=0.4)
    log_close = np.log(bars["close"].to_numpy())
    for row in range(20, 75):
        sigma = np.std(np.diff(log_close[row - 20 : row + 1]), ddof=1)
        forward = log_close[row + 5] - log_close[row]
        expected = 1 if abs(forward) < 0.4 * sigma * np.sqrt(5) else (2 if forward > 0 else 0)
        assert label.values.iloc[row] == expected, row
    assert label.values.iloc[:20].isna().all()  # the volatility warm-up


def test_direction_binary_zero_return_is_nan_or_down():
    closes = [100, 101, 101, 100]
    nan_label = direction_binary_label(bars_from_closes(closes), horizon=1)
    np.testing.assert_array_equal(nan_label.values.to_numpy(), [1, np.nan, 0, np.nan])
    assert pd.isna(nan_label.end_time.iloc[1])
    down_label = direction_binary_label(bars_from_closes(closes), horizon=1, zero_return="down")
    np.testing.assert_array_equal(down_label.values.to_numpy(), [1, 0, 0, np.nan])


# --- Triple barrier and meta-labels ---------------------------------------------

ENTRY = 29  # the last bar of the alternating warm-up; sigma_t = 0.01 * sqrt(20 / 19)
SIGMA = 0.01 * np.sqrt(20 / 19)


def barrier_bars(forward_log_returns, highs=None, lows=None):
    """Alternating warm-up up to ENTRY, then the given log returns after it."""
    warmup = np.log(alternating_closes(ENTRY + 1))
    log_closes = np.concatenate([warmup, warmup[-1] + np.cumsum(forward_log_returns)])
    bars = bars_from_closes(np.exp(log_closes))
    for offset, value in (highs or {}).items():
        bars.iloc[ENTRY + offset, bars.columns.get_loc("high")] = bars["close"].iloc[ENTRY] * np.exp(value)
    for offset, value in (lows or {}).items():
        bars.iloc[ENTRY + offset, bars.columns.get_loc("low")] = bars["close"].iloc[ENTRY] * np.exp(value)
    return bars


def test_a_jump_on_bar_t_plus_2_takes_profit_and_ends_there():
    bars = barrier_bars([0.0, 5 * SIGMA, 0.0, 0.0, 0.0, 0.0])
    label = triple_barrier_label(bars, horizon=5)
    assert label.values.iloc[ENTRY] == 2  # PROFIT_TAKE, AFML's +1
    assert label.end_time.iloc[ENTRY] == bars.index[ENTRY + 2]
    assert label.classes == ("STOP_LOSS", "VERTICAL", "PROFIT_TAKE")


def test_a_drop_stops_out_at_the_bar_of_the_touch():
    bars = barrier_bars([0.0, 0.0, -5 * SIGMA, 0.0, 0.0, 0.0])
    label = triple_barrier_label(bars, horizon=5)
    assert label.values.iloc[ENTRY] == 0
    assert label.end_time.iloc[ENTRY] == bars.index[ENTRY + 3]


def test_barriers_are_touched_by_high_and_low_not_only_the_close():
    # Barrier at sigma * sqrt(5) ~ 0.0229: the close never moves, the high of bar t+4 reaches 0.025.
    bars = barrier_bars([0.0] * 6, highs={4: 0.025})
    label = triple_barrier_label(bars, horizon=5)
    assert label.values.iloc[ENTRY] == 2 and label.end_time.iloc[ENTRY] == bars.index[ENTRY + 4]
    wider = triple_barrier_label(bars, horizon=5, pt_multiple=1.2)  # barrier 0.0275: not reached
    assert wider.values.iloc[ENTRY] == 1 and wider.end_time.iloc[ENTRY] == bars.index[ENTRY + 5]


def test_a_bar_touching_both_barriers_counts_as_stop_loss():
    bars = barrier_bars([0.0] * 6, highs={2: 0.03}, lows={2: -0.03})
    label = triple_barrier_label(bars, horizon=5)
    assert label.values.iloc[ENTRY] == 0 and label.end_time.iloc[ENTRY] == bars.index[ENTRY + 2]


def test_vertical_barrier_is_flat_or_the_sign_of_the_return():
    bars = barrier_bars([0.004, 0.004, 0.004, -0.002, 0.004, 0.0])
    flat = triple_barrier_label(bars, horizon=5)
    assert flat.values.iloc[ENTRY] == 1 and flat.end_time.iloc[ENTRY] == bars.index[ENTRY + 5]
    signed = triple_barrier_label(bars, horizon=5, vertical_label="sign")
    assert signed.values.iloc[ENTRY] == 1 and signed.classes == ("DOWN", "UP")
    down = triple_barrier_label(barrier_bars([-0.004, 0, 0, 0, 0, 0]), horizon=5, vertical_label="sign")
    assert down.values.iloc[ENTRY] == 0


def test_a_touch_is_known_before_the_vertical_barrier_exists():
    # The data end two bars after the entry: a touch on bar t+1 is a label, no touch is not.
    touched = triple_barrier_label(barrier_bars([5 * SIGMA, 0.0]), horizon=5)
    assert touched.values.iloc[ENTRY] == 2 and touched.end_time.iloc[ENTRY] == touched.end_time.index[ENTRY + 1]
    untouched = triple_barrier_label(barrier_bars([0.0, 0.0]), horizon=5)
    assert np.isnan(untouched.values.iloc[ENTRY]) and pd.isna(untouched.end_time.iloc[ENTRY])


def constant_side(value):
    return lambda bars: pd.Series(float(value), index=bars.index)


@pytest.mark.parametrize(
    "side, forward_log_returns, expected, exit_offset",
    [
        (-1, [0.0, -5 * SIGMA, 0, 0, 0, 0], 1, 2),  # a short takes profit on the drop
        (-1, [0.0, 5 * SIGMA, 0, 0, 0, 0], 0, 2),  # a short is stopped out by the jump
        (1, [0.004, 0.004, 0, 0, 0, 0], 1, 5),  # a long ends positive at the vertical barrier
        (1, [-0.004, 0, 0, 0, 0, 0], 0, 5),  # a long ends negative at the vertical barrier
    ],
)
def test_meta_label_follows_the_side(side, forward_log_returns, expected, exit_offset):
    bars = barrier_bars(forward_log_returns)
    label = meta_label(bars, horizon=5, side=constant_side(side))
    assert label.values.iloc[ENTRY] == expected
    assert label.end_time.iloc[ENTRY] == bars.index[ENTRY + exit_offset]


def test_a_callable_side_may_return_an_array():
    bars = barrier_bars([0.0, -5 * SIGMA, 0, 0, 0, 0])
    label = meta_label(bars, horizon=5, side=lambda bars: -np.ones(len(bars)))
    assert label.values.iloc[ENTRY] == 1 and label.end_time.iloc[ENTRY] == bars.index[ENTRY + 2]


def test_meta_label_is_nan_where_the_primary_signal_does_not_trade():
    label = meta_label(barrier_bars([0.0, 5 * SIGMA, 0, 0, 0, 0]), horizon=5, side=constant_side(0))
    assert label.values.isna().all() and label.end_time.isna().all()


def test_default_sides_trade_where_their_signal_says():
    bars = make_bars(300, seed=5)
    momentum = meta_label(bars, horizon=5, side="momentum")
    assert momentum.values.iloc[20:-5].notna().all()  # momentum always has a side after its warm-up
    rsi = meta_label(bars, horizon=5, side="rsi", rsi_oversold=40.0, rsi_overbought=60.0)
    assert 0 < rsi.values.notna().sum() < momentum.values.notna().sum()


# --- Pattern-validation targets (seed 004) --------------------------------------


def test_momentum_persistence_needs_more_than_60_percent_of_returns_in_its_direction():
    warmup = np.log(alternating_closes(20, step=0.002))
    momentum = warmup[-1] + np.cumsum([0.02] * 7)  # the strongest 7-bar move so far: the pattern fires
    for forward_returns, expected in (([0.01, 0.01, 0.01, 0.01, -0.01], 1), ([0.01, 0.01, 0.01, -0.01, -0.01], 0)):
        closes = np.exp(np.concatenate([warmup, momentum, momentum[-1] + np.cumsum(forward_returns)]))
        label = momentum_persistence_label(bars_from_closes(closes), horizon=5, min_history=5)
        entry = len(warmup) + len(momentum) - 1
        assert label.values.iloc[entry] == expected  # 4/5 = 0.8 > 0.6 persists, 3/5 = 0.6 does not
        assert label.end_time.iloc[entry] == label.end_time.index[entry + 5]


def past_threshold(signal, row, quantile, min_history):
    history = signal[: row + 1]
    history = history[~np.isnan(history)]
    return np.quantile(history, quantile) if len(history) >= min_history else np.nan


def reference_pattern(bars, horizon, signal, detect, validate, quantile, min_history, no_pattern):
    """Row by row, as the docstrings say: threshold from the signal's history up to t."""
    num_bars = len(bars)
    values = np.full(num_bars, np.nan)
    for row in range(num_bars - horizon):
        threshold = past_threshold(signal, row, quantile, min_history)
        if np.isnan(signal[row]) or np.isnan(threshold):
            continue
        if detect(row, threshold):
            values[row] = float(validate(row))
        elif no_pattern == "zero":
            values[row] = 0.0
    return values


def reference_momentum_persistence(bars, horizon, quantile, min_history, no_pattern, window=7):
    log_close = np.log(bars["close"].to_numpy())
    returns = np.concatenate([[np.nan], np.diff(log_close)])
    momentum = np.full(len(bars), np.nan)
    momentum[window:] = log_close[window:] - log_close[:-window]

    def validate(row):
        forward = returns[row + 1 : row + horizon + 1]
        forward = forward[forward != 0]
        share = np.mean(np.sign(forward) == np.sign(momentum[row])) if len(forward) else 0.0
        return share > 0.6

    strength = np.abs(momentum)
    return reference_pattern(
        bars, horizon, strength, lambda row, threshold: strength[row] > threshold, validate, quantile, min_history,
        no_pattern,
    )


def reference_volatility_regime_shift(bars, horizon, quantile, min_history, no_pattern, short=10, long=60):
    log_close = np.log(bars["close"].to_numpy())
    squared = np.concatenate([[np.nan], np.diff(log_close) ** 2])

    def realized(row, window):
        return np.sqrt(np.mean(squared[row - window + 1 : row + 1])) if row >= window else np.nan

    ratio = np.array([realized(row, short) / realized(row, long) for row in range(len(bars))])
    return reference_pattern(
        bars, horizon, ratio, lambda row, threshold: ratio[row] > threshold,
        lambda row: np.sqrt(np.mean(squared[row + 1 : row + horizon + 1])) > realized(row, long),
        quantile, min_history, no_pattern,
    )


def reference_trend_exhaustion(bars, horizon, quantile, min_history, no_pattern, window=20):
    log_close = np.log(bars["close"].to_numpy())
    returns = np.concatenate([[np.nan], np.diff(log_close)])
    extension = np.full(len(bars), np.nan)
    for row in range(window, len(bars)):
        sigma = np.std(returns[row - window + 1 : row + 1], ddof=1)
        extension[row] = (log_close[row] - log_close[row - window]) / (sigma * np.sqrt(window))

    def validate(row):
        forward = log_close[row + horizon] - log_close[row]
        return forward != 0 and np.sign(forward) == -np.sign(extension[row])

    strength = np.abs(extension)
    return reference_pattern(
        bars, horizon, strength, lambda row, threshold: strength[row] > threshold, validate, quantile, min_history,
        no_pattern,
    )


def reference_volume_divergence(bars, horizon, quantile, min_history, no_pattern, window=10):
    log_close = np.log(bars["close"].to_numpy())
    volume = bars["volume"].to_numpy()
    returns = np.concatenate([[np.nan], np.diff(log_close)])
    flow, divergence = np.full(len(bars), np.nan), np.full(len(bars), np.nan)
    for row in range(window, len(bars)):
        span = slice(row - window + 1, row + 1)
        flow[row] = np.sum(np.sign(returns[span]) * volume[span]) / np.sum(volume[span])
        divergence[row] = -np.sign(log_close[row] - log_close[row - window]) * flow[row]

    def validate(row):
        forward = log_close[row + horizon] - log_close[row]
        return forward != 0 and np.sign(forward) == np.sign(flow[row])

    return reference_pattern(
        bars, horizon, divergence, lambda row, threshold: divergence[row] > max(threshold, 0.0), validate, quantile,
        min_history, no_pattern,
    )


@pytest.mark.parametrize("no_pattern", ["nan", "zero"])
@pytest.mark.parametrize(
    "function, reference",
    [
        (momentum_persistence_label, reference_momentum_persistence),
        (volatility_regime_shift_label, reference_volatility_regime_shift),
        (trend_exhaustion_label, reference_trend_exhaustion),
        (volume_divergence_label, reference_volume_divergence),
    ],
)
def test_pattern_targets_match_a_row_by_row_reference(function, reference, no_pattern):
    bars = make_bars(260, seed=6)
    label = function(bars, horizon=5, quantile=0.6, min_history=40, no_pattern=no_pattern)
    expected = reference(bars, 5, quantile=0.6, min_history=40, no_pattern=no_pattern)
    np.testing.assert_array_equal(label.values.to_numpy(), expected)
    fired = label.values.notna() & (label.values == 1)
    assert 0 < fired.sum() < label.values.notna().sum()  # both outcomes occur
    known = label.values.notna()
    assert (label.end_time[known] == pd.Series(bars.index, index=bars.index).shift(-5)[known]).all()


# --- No look-ahead, for every label of the registry --------------------------------

CASES = [(name, {}) for name in LABELS] + [
    ("forward_return", {"scaling": "none"}),
    ("direction", {"flat_band": "fixed", "flat_return": 0.01}),
    ("momentum_persistence", {"no_pattern": "zero"}),
    ("volume_divergence", {"no_pattern": "zero"}),
    ("triple_barrier", {"vertical_label": "sign", "pt_multiple": 0.5}),
    ("meta_label", {"side": "rsi", "rsi_oversold": 45.0, "rsi_overbought": 55.0}),
]
NUM_BARS = 420
CUTS = range(40, NUM_BARS, 29)


def perturb_after(bars, cut, seed):
    """The same bars up to `cut`, then a different future with three times the volatility."""
    other = make_bars(len(bars), seed=seed + 1000)
    log_moves = np.log(other[["open", "high", "low", "close"]] / other["close"].iloc[cut].item())
    future = bars["close"].iloc[cut].item() * np.exp(3 * log_moves)
    perturbed = bars.copy()
    perturbed.iloc[cut + 1 :, :4] = future.iloc[cut + 1 :].to_numpy()
    perturbed.iloc[cut + 1 :, 4] = other["volume"].iloc[cut + 1 :].to_numpy() * 3
    return perturbed


def same(first, second):
    """Equal values (NaN and NaT equal to themselves), whatever the index."""
    return first.reset_index(drop=True).equals(second.reset_index(drop=True))


def look_ahead_violations(compute, bars, cuts, seed):
    """Cuts at which a label known by then depends on bars after it.

    Two checks per cut t: labels computed on bars truncated at t agree with the
    full computation (values and end times) wherever their end time is <= t,
    and none has a value with an end time past t; and the full computation on
    bars whose future after t was replaced agrees with the original wherever
    either one's end time is <= t.
    """
    full = compute(bars)
    violations = []
    for cut in cuts:
        cut_time = bars.index[cut]
        truncated = compute(bars.iloc[: cut + 1])
        known = truncated.end_time.notna()
        ok = (truncated.values.notna() == known).all() and (truncated.end_time[known] <= cut_time).all()
        ok &= same(truncated.values[known], full.values[known.index[known]])
        ok &= same(truncated.end_time[known], full.end_time[known.index[known]])
        perturbed = compute(perturb_after(bars, cut, seed))
        known_by_cut = (full.end_time <= cut_time) | (perturbed.end_time <= cut_time)
        ok &= same(full.values[known_by_cut], perturbed.values[known_by_cut])
        ok &= same(full.end_time[known_by_cut], perturbed.end_time[known_by_cut])
        if not ok:
            violations.append(cut)
    return violations


def registry_label(name, options):
    return lambda bars: compute_labels(Panel({"A": bars}, validate=False), name, horizon=5, **options)["A"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name, options", CASES, ids=[f"{name}{options or ''}" for name, options in CASES])
def test_labels_known_by_t_use_bars_up_to_t_only(name, options, seed):
    bars = make_bars(NUM_BARS, seed=seed)
    compute = registry_label(name, options)
    label = compute(bars)
    assert label.values.notna().sum() > 20  # the check has labels to look at
    assert look_ahead_violations(compute, bars, CUTS, seed) == []


def test_the_check_catches_the_seeds_whole_series_percentile(monkeypatch):
    # Seed 004 compared momentum with the 70th percentile of the whole series:
    # bars after t move that threshold, so the check must fail.
    monkeypatch.setattr(
        pattern_labels,
        "past_quantile",
        lambda signal, quantile, min_history: pd.Series(signal.quantile(quantile), index=signal.index),
    )
    bars = make_bars(NUM_BARS, seed=0)
    assert look_ahead_violations(registry_label("momentum_persistence", {}), bars, CUTS, seed=0) != []


DETECTORS = [
    ("momentum_persistence", {"min_history": 10}),
    ("volatility_regime_shift", {"min_history": 10}),
    ("trend_exhaustion", {"min_history": 10}),
    ("volume_divergence", {"min_history": 10}),
    ("meta_label", {"side": "rsi", "rsi_oversold": 45.0, "rsi_overbought": 55.0}),
    ("meta_label", {"side": "momentum"}),
]


@pytest.mark.parametrize("name, options", DETECTORS, ids=[f"{name}{options}" for name, options in DETECTORS])
def test_whether_a_pattern_fires_at_t_depends_on_bars_up_to_t_only(name, options):
    # Stricter than the end-time check: the detection threshold (or the
    # primary side) at t may not even use bars t+1 .. t+horizon. A short
    # `min_history` makes the threshold sensitive to every new value.
    bars = make_bars(160, seed=0)
    # With no_pattern="nan" (and for meta-labels, side 0 -> NaN) a value
    # exists exactly where the pattern fired, wherever the forward bars exist.
    compute = registry_label(name, options)
    fired = compute(bars).values.notna()
    for cut in range(20, 150):
        rows = slice(None, cut + 1)
        assert same(fired[rows], compute(perturb_after(bars, cut, seed=0)).values.notna()[rows]), cut


def test_triple_barrier_end_times_are_often_before_the_vertical_barrier():
    label = triple_barrier_label(make_bars(300, seed=7), horizon=5)
    known = label.end_time.notna()
    bars_to_exit = (label.end_time[known] - label.end_time.index[known]).dt.days
    assert (bars_to_exit < 7).mean() > 0.2  # exits before t+5 business days (7 calendar days)
    assert set(label.values.dropna().unique()) == {0.0, 1.0, 2.0}


# --- The offline sample: class balance -----------------------------------------------


@pytest.fixture(scope="module")
def sample_panel():
    from keras_synapse.data.sample import load_sample

    return load_sample()


def test_direction_flat_share_on_the_offline_sample(sample_panel):
    labels = compute_labels(sample_panel, "direction", horizon=5)
    values = pd.concat([label.values for label in labels.values()]).dropna()
    shares = values.value_counts(normalize=True)
    assert 0.20 <= shares[1.0] <= 0.45, shares.to_dict()  # FLAT (it is 0.312 with the default 0.4)
    assert shares[0.0] > 0.25 and shares[2.0] > 0.25, shares.to_dict()


@pytest.mark.parametrize("name", sorted(LABELS))
def test_every_label_runs_on_the_sample_and_declares_its_classes(sample_panel, name):
    labels = compute_labels(sample_panel, name, horizon=5)
    for label in labels.values():
        assert label.kind in ("regression", "binary", "multiclass")
        known = label.values.dropna()
        assert len(known) > 100
        assert (label.values.isna() == label.end_time.isna()).all()
        if label.kind != "regression":
            assert set(known.unique()) <= set(range(label.num_classes))
            assert label.num_classes == (2 if label.kind == "binary" else 3)


# --- Registry and errors -------------------------------------------------------------


def test_compute_labels_keeps_its_positional_signature():
    panel = Panel({"A": make_bars(60)})
    label = compute_labels(panel, "forward_return", 5, "none")["A"]
    np.testing.assert_allclose(label.values.iloc[0], np.log(panel["A"]["close"].iloc[5] / panel["A"]["close"].iloc[0]))


def test_label_options_lists_defaults():
    assert label_options("direction") == {"flat_band": "volatility", "flat_multiple": 0.4, "flat_return": 0.005}
    assert label_options("forward_return") == {}


def test_unknown_label_lists_the_known_ones():
    with pytest.raises(ConfigError, match="Unknown label 'direction3'. Known: forward_return, forward_volatility, direction"):
        compute_labels(Panel({"A": make_bars(60)}), "direction3")


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match=r"no option\(s\) \['flat_multiplier'\].*Received: flat_multiplier=0.5"):
        compute_labels(Panel({"A": make_bars(60)}), "direction", flat_multiplier=0.5)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("forward_return", {"horizon": 0}, "`horizon` must be >= 1. Received: horizon=0"),
        ("forward_return", {"scaling": "zscore"}, "Received: label_scaling='zscore'"),
        ("direction", {"flat_band": "wide"}, "one of ('volatility', 'fixed'). Received: flat_band='wide'"),
        ("direction", {"flat_multiple": -0.1}, "`flat_multiple` must be >= 0. Received: flat_multiple=-0.1"),
        ("direction_binary", {"zero_return": "up"}, "Received: zero_return='up'"),
        ("momentum_persistence", {"quantile": 70}, "`quantile` must be in (0, 1). Received: quantile=70"),
        ("momentum_persistence", {"no_pattern": "drop"}, "Received: no_pattern='drop'"),
        ("trend_exhaustion", {"min_history": 0}, "`min_history` must be an integer >= 1. Received: min_history=0"),
        ("volatility_regime_shift", {"short_window": 60}, "> short_window (60). Received: long_window=60"),
        ("volume_divergence", {"divergence_window": 2.5}, "Received: divergence_window=2.5"),
        ("triple_barrier", {"pt_multiple": 0}, "`pt_multiple` must be > 0 (inf disables it). Received: pt_multiple=0"),
        ("triple_barrier", {"vertical_label": "zero"}, "Received: vertical_label='zero'"),
        ("meta_label", {"side": "macd"}, "one of ('momentum', 'rsi') or a callable. Received: side='macd'"),
        ("meta_label", {"side": "rsi", "rsi_overbought": 20.0}, "Received: rsi_overbought=20.0"),
        ("meta_label", {"side": constant_side(2)}, "A callable `side` must return -1, 0 or 1. Received: 2.0"),
    ],
)
def test_bad_options_say_what_was_received(name, options, message):
    with pytest.raises(ConfigError) as error:
        compute_labels(Panel({"A": make_bars(60)}), name, **options)
    assert message in str(error.value)


def test_forward_volatility_by_hand():
    bars = make_bars(40, seed=9)
    label = compute_labels(Panel({"A": bars}), "forward_volatility", horizon=3, scaling="none")["A"]
    returns = np.log(bars["close"]).diff()
    expected = np.sqrt(np.mean(returns.iloc[6:9] ** 2))  # bars t+1..t+3 for t = 5
    assert label.values.iloc[5] == pytest.approx(expected)
    assert label.end_time.iloc[5] == bars.index[8] and label.kind == "regression"
    assert (label.values.dropna() >= 0).all()


@pytest.mark.parametrize("name", ["forward_return", "direction", "triple_barrier"])
def test_an_execution_lag_labels_each_signal_with_the_trade_a_bar_later(name):
    """With lag 1 the trade fills at the next bar's open and leaves at the open one horizon later."""
    from keras_synapse.labels import compute_labels

    bars = make_bars(200, seed=7)
    panel = Panel({"AAA": bars})
    now = compute_labels(panel, name, horizon=5, scaling="none")["AAA"]
    lagged = compute_labels(panel, name, horizon=5, scaling="none", execution_lag=1)["AAA"]
    assert lagged.execution_lag == 1 and lagged.kind == now.kind
    open_to_open = np.log(bars["open"]).shift(-6) - np.log(bars["open"]).shift(-1)
    np.testing.assert_allclose(lagged.forward_return.to_numpy(), open_to_open.to_numpy(), equal_nan=True)
    pd.testing.assert_series_equal(lagged.end_time.iloc[:-1], now.end_time.iloc[1:].set_axis(now.end_time.index[:-1]))
    assert np.isnan(lagged.forward_return.iloc[-1]) and pd.isna(lagged.end_time.iloc[-1])
    if name == "forward_return":  # the target is the trade's own return
        known = lagged.values.notna()
        np.testing.assert_allclose(lagged.values[known], open_to_open[known])
    else:  # event labels keep their own definition, a bar later
        pd.testing.assert_series_equal(lagged.values.iloc[:-1], now.values.iloc[1:].set_axis(now.values.index[:-1]))


def test_closes_only_bars_trade_a_lag_at_the_close():
    from keras_synapse.labels import compute_labels

    bars = make_bars(200, seed=7)
    bars = bars.assign(open=bars["close"], high=bars["close"], low=bars["close"])
    lagged = compute_labels(Panel({"AAA": bars}), horizon=5, scaling="none", execution_lag=1)["AAA"]
    close_to_close = np.log(bars["close"]).shift(-6) - np.log(bars["close"]).shift(-1)
    np.testing.assert_allclose(lagged.forward_return.to_numpy(), close_to_close.to_numpy(), equal_nan=True)


def test_an_execution_lag_is_an_integer_of_at_least_zero():
    from keras_synapse.labels import compute_labels

    with pytest.raises(ConfigError, match="`execution_lag` must be an integer >= 0. Received: execution_lag=-1"):
        compute_labels(Panel({"AAA": make_bars(100)}), execution_lag=-1)


@pytest.mark.parametrize("how", ["rank", "zscore"])
def test_cross_sectional_labels_use_each_date_alone(how):
    from keras_synapse.labels.cross_section import cross_sectional_labels

    panel = Panel({f"S{index}": make_bars(120, seed=index) for index in range(5)})
    raw = compute_labels(panel, horizon=5, scaling="none")
    normalized = cross_sectional_labels(raw, how)
    table = pd.DataFrame({symbol: label.values for symbol, label in normalized.items()}).dropna()
    np.testing.assert_allclose(table.mean(axis=1), 0, atol=1e-12)  # centred on every date
    if how == "zscore":
        np.testing.assert_allclose(table.std(axis=1, ddof=0), 1, rtol=1e-9)
    else:
        assert table.max(axis=1).round(9).eq(0.4).all()  # five symbols: ranks -0.4 .. +0.4
    # One symbol's raw label on one date, made the largest, changes that date's targets only.
    date = table.index[50]
    values = raw["S0"].values.where(raw["S0"].values.index != date, 1.0)
    shifted = {**raw, "S0": dataclasses.replace(raw["S0"], values=values)}
    again = pd.DataFrame({symbol: label.values for symbol, label in cross_sectional_labels(shifted, how).items()})
    changed = (again.dropna() - table).abs().max(axis=1) > 1e-12
    assert list(changed[changed].index) == [date]
    for symbol, label in normalized.items():  # the raw forward return stays for evaluation
        assert label.forward_return.equals(raw[symbol].forward_return)
        assert (label.values.isna() == label.end_time.isna()).all()


def test_cross_sectional_labels_need_three_symbols_and_a_regression_label():
    from keras_synapse.labels.cross_section import cross_sectional_labels

    two = compute_labels(Panel({"A": make_bars(60, seed=1), "B": make_bars(60, seed=2)}), horizon=5)
    assert all(label.values.isna().all() for label in cross_sectional_labels(two, "rank").values())
    classes = compute_labels(Panel({"A": make_bars(60, seed=1)}), "direction", horizon=5)
    with pytest.raises(ConfigError, match="normalizes regression targets"):
        cross_sectional_labels(classes, "rank")
