"""Shared fixtures: small, valid bar frames to corrupt one way at a time."""

import numpy as np
import pandas as pd
import pytest


def make_bars(num_bars=60, seed=0, start="2024-01-01", tz="UTC", freq="B"):
    """Valid random-walk OHLCV bars on a UTC business-day index."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=num_bars, freq=freq, tz=tz, name="timestamp")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, num_bars)))
    open_ = close * np.exp(rng.normal(0, 0.003, num_bars))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, num_bars))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, num_bars))
    volume = rng.integers(100_000, 1_000_000, num_bars).astype(float)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


@pytest.fixture
def bars():
    return make_bars()
