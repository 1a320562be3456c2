"""The model card is enough to rebuild a model's inputs: an app without keras_synapse matches `predict`."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from keras_synapse.data import load_panel

# What an outside app writes from the card alone: one small function per feature `kind`, with every
# parameter read from the card, and the window rules the card states. It never imports keras_synapse.
REBUILD = textwrap.dedent('''
    import json, sys
    import numpy as np, pandas as pd, keras

    version, bars_dir, output = sys.argv[1:4]
    card = json.load(open(f"{version}/metadata.json"))
    rules, sequence = card["windows"], card["inputs"]["sequence"]

    def feature(kind, bars, spec):
        close, log_close = bars["close"], np.log(bars["close"])
        daily = log_close.diff()
        if kind == "log_return":
            return log_close.diff(spec["bars"])
        if kind == "realized_volatility":
            return daily.rolling(spec["window"]).std()
        if kind == "volume_zscore":
            volume = np.log1p(bars["volume"])
            mean, std = volume.rolling(spec["window"]).mean(), volume.rolling(spec["window"]).std()
            return ((volume - mean) / std.where(std > 0)).where(std > 0, 0.0).where(mean.notna())
        if kind == "log_range":
            return np.log(bars["high"]) - np.log(bars["low"])
        if kind == "close_to_mean":
            return log_close - np.log(close.rolling(spec["window"]).mean())
        if kind == "overnight_gap":
            return np.log(bars["open"]) - log_close.shift(1)
        if kind == "scaled_return":
            volatility = daily.rolling(spec["volatility_window"]).std()
            scale = volatility.where(volatility > 0)
            value = log_close.diff(spec["bars"]) / (scale * np.sqrt(spec["bars"]))
            return value.where(scale.notna() | volatility.isna(), 0.0)
        raise SystemExit(f"unknown feature kind {kind}")

    model = keras.models.load_model(f"{version}/model.keras", compile=False)
    rows = []
    for symbol in sys.argv[4:]:
        bars = pd.read_csv(f"{bars_dir}/{symbol}.csv", index_col="timestamp", parse_dates=True)
        frame = pd.DataFrame({name: feature(spec["kind"], bars, spec)
                              for name, spec in sequence["definitions"].items()})
        frame = frame.iloc[rules["warmup"] - 1:]
        values = frame.to_numpy(dtype=np.float32)
        times = frame.index.as_unit("ns").asi8
        spacing, hour = np.diff(times), (times // 3_600_000_000_000) % 24
        closure = (np.isin(hour[:-1], rules["sessions"]["closes"]) & np.isin(hour[1:], rules["sessions"]["opens"])
                   & (spacing <= 5 * 86_400_000_000_000))
        breaks = np.concatenate([[True], (spacing > rules["max_gap_factor"] * np.median(spacing)) & ~closure])
        segment_start = np.maximum.accumulate(np.where(breaks, np.arange(len(frame)), 0))
        length = rules["sequence_length"]
        ends = [t for t in range(length - 1, len(frame)) if t - length + 1 >= segment_start[t]
                and np.isfinite(values[t - length + 1:t + 1]).all()]
        windows = np.stack([values[t - length + 1:t + 1] for t in ends])
        scores = model.predict({"sequence": windows}, verbose=0)[:, 0]
        rows += [(symbol, str(frame.index[t]), float(score)) for t, score in zip(ends, scores)]
    pd.DataFrame(rows, columns=["symbol", "timestamp", "score"]).to_csv(output, index=False)
    assert not any(name.startswith("keras_synapse") for name in sys.modules)
''')


def test_the_card_alone_rebuilds_the_core_features_and_windows(trained_registry, tmp_path):
    card = json.loads((trained_registry / "metadata.json").read_text())
    definitions = card["inputs"]["sequence"]["definitions"]
    assert list(definitions) == card["inputs"]["sequence"]["feature_names"] and all(definitions.values())
    assert card["windows"]["sequence_length"] == card["config"]["sequence_length"]
    panel = load_panel("sample", quick=True)
    symbols = ["SP500", "SYN-03"]
    (tmp_path / "bars").mkdir()
    for symbol in symbols:
        # A four-day outage inside the data, so the gap rule is exercised, not only the warm-up.
        bars = panel[symbol].drop(panel[symbol].index[300:304])
        bars.rename_axis("timestamp").to_csv(tmp_path / "bars" / f"{symbol}.csv")
    result = subprocess.run([sys.executable, "-m", "keras_synapse.predict", str(trained_registry), "--data",
                             str(tmp_path / "bars"), "--backend", "keras", "--output", str(tmp_path / "ours.csv")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (tmp_path / "rebuild.py").write_text(REBUILD)
    result = subprocess.run([sys.executable, str(tmp_path / "rebuild.py"), str(trained_registry),
                             str(tmp_path / "bars"), str(tmp_path / "theirs.csv"), *symbols],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ours = pd.read_csv(tmp_path / "ours.csv")
    theirs = pd.read_csv(tmp_path / "theirs.csv")
    for frame in (ours, theirs):
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    merged = ours.merge(theirs, on=["symbol", "timestamp"], how="outer", suffixes=("_ours", "_theirs"),
                        indicator=True)
    # The same windows, none more and none fewer (the outage drops the same ones), and the same scores.
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    assert len(merged) > 1000
    np.testing.assert_allclose(merged["score_theirs"], merged["score_ours"], atol=1e-5)


@pytest.mark.parametrize("feature_set", ["technical", "pattern14"])
def test_sets_too_involved_to_restate_say_so(feature_set):
    from keras_synapse.serving.registration import feature_definitions

    assert set(feature_definitions(feature_set, ["a", "b"]).values()) == {None}
