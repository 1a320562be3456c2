"""Cross-sectional features: each date against its own universe, nothing from another date."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.data.panel import Panel
from keras_synapse.errors import ConfigError
from keras_synapse.features import compute_features
from keras_synapse.features.cross_section import add_universe_features, cross_sectional_inputs, normalize_cross_section


@pytest.fixture(scope="module")
def frames():
    # Unequal histories: the youngest symbol starts later, so early dates hold fewer symbols.
    panel = Panel({"AAA": make_bars(160, seed=1), "BBB": make_bars(160, seed=2), "CCC": make_bars(160, seed=3),
                   "NEW": make_bars(100, seed=4, start="2024-03-15")})
    return compute_features(panel, "core")


def test_universe_features_are_the_feature_minus_the_dates_mean(frames):
    added = add_universe_features(frames)
    date = frames["NEW"].index[10]
    mean = np.mean([frame.loc[date, "log_return_1"] for frame in frames.values()])
    assert added["AAA"].loc[date, "log_return_1_vs_universe"] == pytest.approx(frames["AAA"].loc[date, "log_return_1"]
                                                                                - mean)
    assert list(added["AAA"].columns[-3:]) == ["log_return_1_vs_universe", "log_return_20_vs_universe",
                                               "volume_zscore_20_vs_universe"]


@pytest.mark.parametrize("how", ["rank", "zscore"])
def test_each_date_is_normalized_on_its_own_values(frames, how):
    normalized = normalize_cross_section(frames, how)
    date = frames["NEW"].index[10]
    values = pd.Series({symbol: frame.loc[date, "log_return_5"] for symbol, frame in frames.items()})
    got = pd.Series({symbol: frame.loc[date, "log_return_5"] for symbol, frame in normalized.items()})
    expected = (values.rank() - 1) / 3 * 2 - 1 if how == "rank" else (values - values.mean()) / values.std(ddof=0)
    pd.testing.assert_series_equal(got, expected, check_names=False)
    # A date with fewer than three symbols has no cross section: the neutral 0.
    sparse = normalize_cross_section({**frames, "CCC": frames["CCC"].iloc[20:]}, how)
    early = frames["AAA"].index[5]
    assert early not in frames["NEW"].index and early not in sparse["CCC"].index
    assert (sparse["AAA"].loc[early] == 0).all() and (sparse["BBB"].loc[early] == 0).all()
    # Truncating the data after a date changes nothing up to it: no later bar enters.
    cut = frames["NEW"].index[30]
    truncated = normalize_cross_section({symbol: frame.loc[:cut] for symbol, frame in frames.items()}, how)
    for symbol in frames:
        pd.testing.assert_frame_equal(truncated[symbol], normalized[symbol].loc[:cut])


def test_too_few_symbols_and_unknown_choices_are_refused(frames):
    two = {symbol: frames[symbol] for symbol in ("AAA", "BBB")}
    with pytest.raises(ConfigError, match=r"`feature_cross_section` compares each date's symbols and needs at least 3"
                                          r"\. Received: 2 symbol\(s\) \(AAA, BBB\)"):
        normalize_cross_section(two, "rank")
    with pytest.raises(ConfigError, match="must be one of"):
        normalize_cross_section(frames, "percentile")
    assert cross_sectional_inputs(frames, False, "") is frames
