"""The per-symbol feature cache: identical to compute_features, parallel, invalidated by what it depends on."""

import dataclasses
import sys

import numpy as np
import pandas as pd
import pytest

from keras_synapse.data.panel import Panel
from keras_synapse.data.synthetic import generate_universe
from keras_synapse.errors import ConfigError
from keras_synapse.features import compute_features
from keras_synapse.features import cache as feature_cache
from keras_synapse.features.cache import compute_features_cached, resolve_cache_directory

REFERENCES = {"market": "SYN-00", "sector": "SYN-01", "vix": "SYN-02", "vix3m": "SYN-03"}


@pytest.fixture(scope="module")
def panel():
    return generate_universe(num_symbols=5, num_bars=400, seed=3).panel


def assert_identical(expected, received):
    assert list(expected) == list(received)
    for symbol in expected:
        pd.testing.assert_frame_equal(expected[symbol], received[symbol], check_exact=True, check_freq=True)


@pytest.mark.parametrize("name", ["core", "pattern17", "technical+multiscale"])
def test_cold_and_cached_results_are_identical_to_compute_features(panel, name, tmp_path):
    expected = compute_features(panel, name, REFERENCES)
    cold, warm = {}, {}
    assert_identical(expected, compute_features_cached(panel, name, REFERENCES, tmp_path, num_workers=2, stats=cold))
    assert_identical(expected, compute_features_cached(panel, name, REFERENCES, tmp_path, stats=warm))
    assert (cold["computed"], cold["workers"]) == (5, 2)
    assert (warm["cached"], warm["computed"]) == (5, 0)
    assert len(list(tmp_path.glob("*.parquet"))) == 5


def test_spawned_workers_give_the_same_frames(panel, monkeypatch):
    # With TensorFlow loaded the pool spawns fresh interpreters instead of forking.
    monkeypatch.setitem(sys.modules, "tensorflow", sys.modules.get("tensorflow", object()))
    assert_identical(compute_features(panel, "core"), compute_features_cached(panel, "core", num_workers=2))


def test_only_symbols_whose_inputs_changed_are_recomputed(panel, tmp_path):
    compute_features_cached(panel, "pattern17", REFERENCES, tmp_path)
    frames = {symbol: panel[symbol] for symbol in panel.symbols}
    revised = frames["SYN-04"].copy()
    revised.iloc[-1, revised.columns.get_loc("volume")] += 1.0  # one revised bar
    stats = {}
    changed = Panel({**frames, "SYN-04": revised})
    result = compute_features_cached(changed, "pattern17", REFERENCES, tmp_path, stats=stats)
    assert (stats["cached"], stats["computed"]) == (4, 1)
    assert_identical(compute_features(changed, "pattern17", REFERENCES), result)

    # A revised reference series (the market) changes every symbol's pattern17 features, not its core ones.
    compute_features_cached(panel, "core", REFERENCES, tmp_path)
    market = frames["SYN-00"].copy()
    market.iloc[-1, market.columns.get_loc("volume")] += 1.0
    new_market = Panel({**frames, "SYN-00": market})
    pattern_stats, core_stats = {}, {}
    compute_features_cached(new_market, "pattern17", REFERENCES, tmp_path, stats=pattern_stats)
    compute_features_cached(new_market, "core", REFERENCES, tmp_path, stats=core_stats)
    assert pattern_stats["computed"] == 5
    assert (core_stats["cached"], core_stats["computed"]) == (4, 1)  # only SYN-00's own bars changed


def test_a_new_cache_version_or_feature_code_misses(panel, tmp_path, monkeypatch):
    compute_features_cached(panel, "core", cache_directory=tmp_path)
    monkeypatch.setattr(feature_cache, "FEATURE_CACHE_VERSION", feature_cache.FEATURE_CACHE_VERSION + 1)
    stats = {}
    compute_features_cached(panel, "core", cache_directory=tmp_path, stats=stats)
    assert stats["computed"] == 5
    monkeypatch.setattr(feature_cache, "feature_code_fingerprint", lambda: "edited feature code")
    compute_features_cached(panel, "core", cache_directory=tmp_path, stats=stats)
    assert stats["computed"] == 5


def test_a_damaged_entry_is_recomputed(panel, tmp_path, caplog):
    compute_features_cached(panel, "core", cache_directory=tmp_path)
    damaged = sorted(tmp_path.glob("*.parquet"))[0]
    damaged.write_bytes(b"not parquet")
    stats = {}
    result = compute_features_cached(panel, "core", cache_directory=tmp_path, stats=stats)
    assert stats["computed"] == 1 and "unreadable" in caplog.text
    assert_identical(compute_features(panel, "core"), result)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_workers_start_only_when_the_symbols_are_slow_enough(panel, monkeypatch):
    monkeypatch.setattr(feature_cache, "default_num_workers", lambda: 2)
    stats = {}
    compute_features_cached(panel, "core", stats=stats)  # ~2 ms a symbol: not worth a pool
    assert stats["workers"] == 1
    monkeypatch.setattr(feature_cache, "MIN_SECONDS_FOR_WORKERS", 0.0)
    result = compute_features_cached(panel, "core", stats=stats)
    assert stats["workers"] == 2
    assert_identical(compute_features(panel, "core"), result)


def test_settings_and_validation(panel, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_SYNAPSE_CACHE", str(tmp_path))
    assert resolve_cache_directory("auto") == tmp_path / "features"
    assert resolve_cache_directory("") is None
    assert resolve_cache_directory("~/x").is_absolute()
    with pytest.raises(ConfigError, match="num_workers=0"):
        compute_features_cached(panel, "core", num_workers=0)
    with pytest.raises(ConfigError, match="needs reference series"):
        compute_features_cached(panel, "pattern17", cache_directory=tmp_path)


def test_prepare_data_uses_the_cache_and_gets_the_same_windows(tmp_path):
    from keras_synapse.config import ExperimentConfig
    from keras_synapse.training.preparation import prepare_data

    config = ExperimentConfig()
    plain = prepare_data(config, quick=True).windowed
    cached_config = dataclasses.replace(config, feature_cache=str(tmp_path))
    first = prepare_data(cached_config, quick=True).windowed
    second = prepare_data(cached_config, quick=True).windowed
    assert len(list(tmp_path.glob("core-*.parquet"))) == len(plain.symbol_names)
    for windowed in (first, second):
        np.testing.assert_array_equal(windowed.features, plain.features)
        np.testing.assert_array_equal(windowed.window_ok, plain.window_ok)
        assert windowed.feature_names == plain.feature_names
