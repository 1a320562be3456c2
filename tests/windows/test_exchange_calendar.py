"""Daily bars counted in their exchange's sessions: week-long holidays are closures, missed sessions still gaps."""

import numpy as np
import pandas as pd
import pytest

from keras_synapse.errors import ConfigError
from keras_synapse.windows.dataset import complete_windows, window_ok
from keras_synapse.windows.exchange_calendar import DAY, ExchangeCalendars


def shanghai_sessions(start="2019-06-03", end="2021-06-30"):
    import exchange_calendars

    return exchange_calendars.get_calendar("XSHG", start=start, end=end).sessions.tz_localize("UTC")


def test_week_long_holidays_cut_windows_in_calendar_time_but_not_in_the_exchanges_sessions():
    index = shanghai_sessions()
    # The Spring Festival and National Day close the exchange for a week or more every year.
    spacing_days = np.diff(index.as_unit("ns").asi8) // DAY
    assert spacing_days.max() >= 8
    in_calendar_time = complete_windows(index.as_unit("ns").asi8, 20, 5.0)
    assert (~in_calendar_time[19:]).sum() > 0.05 * len(index)  # 5%+ of the windows lost to holidays
    calendars = ExchangeCalendars.parse("XSHG")
    assert window_ok("600519.SS", index, 20, 5.0, None, calendars)[19:].all()


def test_sessions_a_symbol_missed_are_still_a_gap():
    index = shanghai_sessions()
    outage = index.delete(range(300, 312))  # twelve sessions the exchange held, missing from the data
    kept = window_ok("600519.SS", outage, 20, 5.0, None, ExchangeCalendars.parse("XSHG"))
    assert not kept[300:319].any() and kept[319:].all() and kept[19:300].all()


def test_per_symbol_calendars_intraday_bars_and_bad_names():
    calendars = ExchangeCalendars.parse("XNYS; 7203.T = XTKS")
    assert calendars.code_for("AAPL") == "XNYS" and calendars.code_for("7203.T") == "XTKS"
    hourly = pd.date_range("2024-01-02 14:30", periods=50, freq="h", tz="UTC")
    assert (calendars.gap_times("AAPL", hourly) == hourly.as_unit("ns").asi8).all()  # intraday keeps its learned session hours
    assert not ExchangeCalendars.parse("")
    with pytest.raises(ConfigError, match=r"no calendar 'XNYZ'; did you mean .*XNYS"):
        ExchangeCalendars.parse("XNYZ")
    with pytest.raises(ConfigError, match=r"names two calendars for every symbol"):
        ExchangeCalendars.parse("XNYS;XTKS")
    with pytest.raises(ConfigError, match=r"expects CALENDAR or SYMBOL=CALENDAR parts"):
        ExchangeCalendars.parse("XNYS;AAPL=")


def test_the_config_checks_the_calendar_and_inference_reads_it_from_the_card():
    from keras_synapse.config import ExperimentConfig
    from keras_synapse.serving.model_inputs import ModelInputs

    with pytest.raises(ConfigError, match="no calendar 'XSHGG'"):
        ExperimentConfig(exchange_calendar="XSHGG")
    metadata = {"config": {"exchange_calendar": "XSHG"},
                "inputs": {"sequence": {"shape": [None, 20, 1], "feature_set": "core", "feature_names": ["x"]}}}
    assert ModelInputs.from_metadata(metadata).exchange_calendars == ExchangeCalendars.parse("XSHG")
    metadata["config"] = {}  # a card written before the setting: calendar time, as then
    assert not ModelInputs.from_metadata(metadata).exchange_calendars
