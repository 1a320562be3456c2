"""GARCH(1,1) forecast: parity with `arch` itself, refits on past bars only, fallbacks."""

import logging

import numpy as np
import pandas as pd
import pytest
from arch import arch_model
from conftest import make_bars

from keras_synapse.data import load_panel
from keras_synapse.data.synthetic import generate_universe
from keras_synapse.errors import ConfigError
from keras_synapse.features import garch
from keras_synapse.features.garch import garch_volatility_forecast


@pytest.fixture(scope="module")
def clustered_bars():
    # Markov volatility regimes give the returns real volatility clustering,
    # so the fits are interior (not the alpha=0, beta=1 boundary).
    return generate_universe(num_symbols=1, num_bars=800, seed=0).panel["SYN-00"]


def scaled_returns(bars, min_history):
    """The returns as the forecast scales them (unit population std over the first `min_history`), and the scale."""
    returns = np.diff(np.log(bars["close"].to_numpy()))
    scale = 1 / np.std(returns[:min_history])
    return returns * scale, scale


def arch_one_step_volatility(result, scale):
    """arch's own one-step-ahead forecast at the end of the sample, in log-return units."""
    return np.sqrt(result.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0]) / scale


def test_forecast_equals_arch_at_fits_and_filtered_steps(clustered_bars):
    min_history, refit_every = 252, 252
    forecast = garch_volatility_forecast(clustered_bars, refit_every=refit_every, min_history=min_history)
    scaled, scale = scaled_returns(clustered_bars, min_history)

    def model(num_returns):
        return arch_model(scaled[:num_returns], mean="Zero", vol="GARCH", p=1, q=1, dist="normal", rescale=False)

    first_fit = model(min_history).fit(disp="off")
    assert first_fit.params.iloc[1] + first_fit.params.iloc[2] < 0.999  # an interior, accepted fit
    # Bar position t holds t returns (the first bar has none).
    np.testing.assert_allclose(forecast.iloc[252], arch_one_step_volatility(first_fit, scale), rtol=1e-6)
    for position in (253, 300, 503):
        fixed = model(position).fix(first_fit.params)
        np.testing.assert_allclose(forecast.iloc[position], arch_one_step_volatility(fixed, scale), rtol=1e-6)

    # The second refit is warm-started from the first fit's parameters.
    second_fit = model(504).fit(disp="off", starting_values=first_fit.params.to_numpy())
    np.testing.assert_allclose(forecast.iloc[504], arch_one_step_volatility(second_fit, scale), rtol=1e-6)
    for position in (505, 700, 755):
        fixed = model(position).fix(second_fit.params)
        np.testing.assert_allclose(forecast.iloc[position], arch_one_step_volatility(fixed, scale), rtol=1e-6)


def test_refit_positions_count_from_the_series_start(clustered_bars, monkeypatch):
    original_fit, attempts = garch._fit_garch, []

    def accepted(sample, starting_values, position):  # every fit accepted: the regular schedule
        attempts.append(position)
        fitted = original_fit(sample, starting_values, position)
        return fitted if fitted is not None else (np.array([0.05, 0.05, 0.9]), 1.0)

    monkeypatch.setattr(garch, "_fit_garch", accepted)
    for num_bars, expected in ((800, [252, 504, 756]), (504, [252]), (252, [])):
        attempts.clear()
        garch_volatility_forecast(clustered_bars.iloc[:num_bars], refit_every=252, min_history=252)
        assert attempts == expected


def test_truncated_bars_give_the_same_past_forecasts(clustered_bars):
    bars = clustered_bars.iloc[:450]
    full = garch_volatility_forecast(bars, refit_every=50, min_history=100)
    assert full.iloc[:100].isna().all() and full.iloc[100:].notna().all()
    for cut in (99, 100, 101, 149, 150, 151, 260, 449):
        truncated = garch_volatility_forecast(bars.iloc[: cut + 1], refit_every=50, min_history=100)
        np.testing.assert_allclose(truncated.to_numpy(), full.iloc[: cut + 1].to_numpy(), rtol=1e-12, equal_nan=True)


def test_a_rejected_refit_continues_with_the_previous_parameters_and_is_retried_sooner(clustered_bars, monkeypatch):
    bars = clustered_bars.iloc[:400]
    reference = garch_volatility_forecast(bars, refit_every=100, min_history=100, retry_every=21)
    original_fit = garch._fit_garch
    attempts = []

    def fail_at_200(sample, starting_values, position):
        attempts.append(position)
        return None if position == 200 else original_fit(sample, starting_values, position)

    monkeypatch.setattr(garch, "_fit_garch", fail_at_200)
    forecast = garch_volatility_forecast(bars, refit_every=100, min_history=100, retry_every=21)
    assert attempts == [100, 200, 221, 321]  # a retry 21 bars after the rejected fit, then the regular interval
    np.testing.assert_array_equal(forecast.iloc[:200].to_numpy(), reference.iloc[:200].to_numpy())
    # With the first fit's parameters the recursion simply runs on through 200..220.
    scaled, scale = scaled_returns(bars, 100)
    first_fit = arch_model(scaled[:100], mean="Zero", rescale=False).fit(disp="off")
    for position in (200, 210, 220):
        fixed = arch_model(scaled[:position], mean="Zero", rescale=False).fix(first_fit.params)
        np.testing.assert_allclose(forecast.iloc[position], arch_one_step_volatility(fixed, scale), rtol=1e-6)
    # The retry is a fit of its own on the 221 returns before it.
    retry = arch_model(scaled[:221], mean="Zero", rescale=False).fit(disp="off", starting_values=first_fit.params)
    np.testing.assert_allclose(forecast.iloc[221], arch_one_step_volatility(retry, scale), rtol=1e-3)


def test_a_degenerate_fit_is_rejected_on_the_calm_year_that_gives_one():
    """The S&P 500's 1999 fits to alpha = 0, beta 0.997: a forecast that ignores shocks. It was kept a year, 35% off
    a fresh fit by 2000-07-03; rejected and retried, it stays within 20%."""
    bars = load_panel("sample")["SP500"]
    scaled, scale = scaled_returns(bars, 252)
    first = arch_model(scaled[:252], mean="Zero", rescale=False).fit(disp="off")
    # The degenerate answer the guard (alpha < 0.01) must catch: 0 to the optimizer's precision (3.5e-6 with arch 8).
    assert first.params["alpha[1]"] < 1e-4
    forecast = garch_volatility_forecast(bars)
    position = int(np.searchsorted(bars.index, pd.Timestamp("2000-07-03", tz="UTC")))
    fresh = arch_model(scaled[:position], mean="Zero", rescale=False).fit(disp="off")
    assert abs(forecast.iloc[position] / arch_one_step_volatility(fresh, scale) - 1) < 0.2


def test_a_fit_that_ignores_shocks_or_sits_on_a_bound_is_rejected(monkeypatch):
    sample = np.random.default_rng(0).standard_normal(300)

    def fitted_to(omega, alpha, beta):
        class Result:
            params = pd.Series([omega, alpha, beta])
            convergence_flag = 0
            conditional_volatility = np.ones(300)

        class Model:
            def fit(self, **options):
                return Result()

        monkeypatch.setattr(garch, "_garch_model", lambda *arguments: Model())
        return garch._fit_garch(sample, None, 300)

    assert fitted_to(0.05, 0.08, 0.9) is not None
    assert fitted_to(0.05, 0.0, 0.9) is None  # alpha = 0
    assert fitted_to(1e-8, 0.08, 0.9) is None  # omega at arch's lower bound
    assert fitted_to(0.05, 0.1, 0.9) is None  # integrated


def test_iid_returns_fall_back_to_a_stationary_model(caplog):
    # make_bars draws i.i.d. returns with a 1% std: the unconstrained fit runs
    # to the integrated boundary (alpha + beta = 1), which is rejected.
    bars = make_bars(600, seed=0)
    with caplog.at_level(logging.DEBUG, logger="keras_synapse.features.garch"):
        forecast = garch_volatility_forecast(bars)
    assert "rejected" in caplog.text
    assert forecast.iloc[252:].notna().all()
    # The fallback targets the sample variance, so the forecast stays near 1%.
    after_warmup = forecast.iloc[252:]
    assert 0.009 < after_warmup.mean() < 0.011
    assert 0.007 < after_warmup.min() and after_warmup.max() < 0.015


def test_short_series_is_all_nan():
    forecast = garch_volatility_forecast(make_bars(252))
    assert forecast.isna().all() and len(forecast) == 252


@pytest.mark.parametrize(
    "arguments, message",
    [({"refit_every": 0}, "refit_every=0"), ({"min_history": 10}, "min_history=10"),
     ({"retry_every": 0}, "retry_every=0")],
)
def test_invalid_arguments_say_what_was_received(arguments, message):
    with pytest.raises(ConfigError, match=message):
        garch_volatility_forecast(make_bars(300), **arguments)
