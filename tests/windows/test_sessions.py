"""The gap rule knows trading sessions: nights, weekends and holidays of intraday bars are not outages."""

import numpy as np
import pandas as pd

from keras_synapse.windows.dataset import complete_windows
from keras_synapse.windows.sessions import SessionHours, gap_breaks, learn_session_hours


def equity_hours(start="2024-01-01", days=120):
    """US-equity-like hourly bars: 14:00-20:00 UTC on weekdays, with a market holiday on 2024-01-15 (a Monday)."""
    dates = pd.bdate_range(start, periods=days, tz="UTC")
    dates = dates[dates != pd.Timestamp("2024-01-15", tz="UTC")]
    return pd.DatetimeIndex([date + pd.Timedelta(hours=hour) for date in dates for hour in range(14, 21)])


def test_closing_and_opening_hours_are_learned_from_recurring_closures():
    sessions = learn_session_hours([equity_hours()], max_gap_factor=5.0)
    assert sessions == SessionHours(closes=(20,), opens=(14,))
    # Daily bars carry no clock time; continuous bars never close; the rule off learns nothing.
    assert not learn_session_hours([pd.bdate_range("2024-01-01", periods=300, tz="UTC")], 5.0)
    assert not learn_session_hours([pd.date_range("2024-01-01", periods=3000, freq="h", tz="UTC")], 5.0)
    assert not learn_session_hours([equity_hours()], 0)


def test_nights_weekends_and_holidays_are_closures_but_an_outage_is_not():
    index = equity_hours()
    # A feed outage from Wednesday 2024-03-06 16:00 to Thursday 17:00: it starts and ends mid-session.
    outage = (index > pd.Timestamp("2024-03-06 16:00", tz="UTC")) & (index < pd.Timestamp("2024-03-07 17:00", tz="UTC"))
    index = index[~outage]
    sessions = learn_session_hours([index], 5.0)
    breaks = gap_breaks(index.as_unit("ns").asi8, 5.0, sessions)
    assert list(index[breaks]) == [pd.Timestamp("2024-03-07 17:00", tz="UTC")]
    # Without sessions every night is an outage, as the rule alone had it.
    assert gap_breaks(index.as_unit("ns").asi8, 5.0).sum() == len(np.unique(index.date)) - 1

    ok = complete_windows(index.as_unit("ns").asi8, 20, 5.0, sessions)
    after = int(np.flatnonzero(breaks)[0])
    assert not ok[after:after + 19].any() and ok[after + 19]
    assert ok[19:after].all() and ok[after + 19:].all()  # the holiday weekend lost nothing


def test_a_long_closure_at_session_hours_is_still_an_outage():
    index = equity_hours()
    # Ten trading days missing, from a regular close to a regular open: far beyond any holiday.
    missing = (index >= pd.Timestamp("2024-04-01", tz="UTC")) & (index < pd.Timestamp("2024-04-13", tz="UTC"))
    index = index[~missing]
    breaks = gap_breaks(index.as_unit("ns").asi8, 5.0, learn_session_hours([index], 5.0))
    assert list(index[breaks]) == [pd.Timestamp("2024-04-15 14:00", tz="UTC")]


def test_session_hours_round_trip_through_the_model_card():
    sessions = SessionHours(closes=(20, 21), opens=(21, 22))
    assert SessionHours.from_dict(sessions.to_dict()) == sessions
    assert SessionHours.from_dict(None) == SessionHours()  # a card written before sessions keeps the old rule
    assert "20:00 or 21:00" in sessions.describe()
