"""The user's own column names: a date column named by `date_column`, OHLCV columns by `columns`."""

import pytest
from conftest import make_bars

from keras_synapse.config import ExperimentConfig, apply_overrides
from keras_synapse.data import file_options, load_panel
from keras_synapse.data.columns import column_mapping
from keras_synapse.errors import ConfigError, DataError


def _write(directory, frame, *names):
    for name in names:
        frame.to_csv(directory / f"{name}.csv", index=False)


def test_a_date_column_named_dt_is_refused_naming_the_option_then_loads_with_it(tmp_path):
    _write(tmp_path, make_bars(30).reset_index(names="dt"), "AAA", "BBB")
    with pytest.raises(DataError, match=r"AAA.csv: no date column\..*name another with --set date_column=NAME"):
        load_panel(str(tmp_path))
    panel = load_panel(str(tmp_path), date_column="dt")
    assert panel.symbols == ("AAA", "BBB") and (panel["AAA"].index == make_bars(30).index).all()
    assert len(load_panel(str(tmp_path), date_column="DT")["AAA"]) == 30  # any case, as every column name
    with pytest.raises(DataError, match=r"AAA.csv: no column 'when' \(date_column='when'\). Received columns: \['dt'"):
        load_panel(str(tmp_path), date_column="when")


def test_a_named_date_index_of_a_parquet_file(tmp_path):
    make_bars(30).rename_axis("dt").to_parquet(tmp_path / "AAA.parquet")
    assert len(load_panel(str(tmp_path), date_column="dt")["AAA"]) == 30


def test_columns_maps_the_files_own_names(tmp_path):
    bars = make_bars(30)
    renamed = bars.rename(columns={"close": "Close Price", "volume": "Vol Traded"}).reset_index(names="Date")
    _write(tmp_path, renamed, "AAA")
    with pytest.raises(DataError, match=r"missing required column\(s\) \['close', 'volume'\].*name the columns with "
                                        r"--set columns=\"close=Close Price;volume=Vol\""):
        load_panel(str(tmp_path))
    panel = load_panel(str(tmp_path), columns="close=Close Price; volume=vol_traded")
    assert (panel["AAA"]["close"].to_numpy() == bars["close"].to_numpy()).all()
    with pytest.raises(DataError, match=r"AAA.csv: `columns` maps close to 'Last', which is not a column"):
        load_panel(str(tmp_path), columns="close=Last")


@pytest.mark.parametrize("text, message", [
    ("close", "expects key=column pairs separated by ';'"),
    ("price=Close", "has no key 'price': keys are open, high, low, close, volume, value, adj_close, symbol"),
    ("close=A;close=B", "names 'close' twice"),
])
def test_a_malformed_mapping_is_refused_when_the_config_is_built(text, message):
    with pytest.raises(ConfigError, match=message):
        column_mapping(text)
    with pytest.raises(ConfigError, match=message):
        apply_overrides(ExperimentConfig(), [f"columns={text}"])


def test_the_file_options_are_config_fields_of_the_data_group_passed_to_load_panel(tmp_path):
    _write(tmp_path, make_bars(30).reset_index(names="dt"), "AAA")
    config = apply_overrides(ExperimentConfig(), [f"data={tmp_path}", "data.date_column=dt", "bad_bars=drop",
                                                  "adjust_prices=false", "columns=close=close"])
    assert file_options(config) == {"date_column": "dt", "columns": "close=close", "bad_bars": "drop",
                                    "adjust_prices": False}
    assert len(load_panel(config.data, **file_options(config))["AAA"]) == 30
    # A model card written before these fields existed reads their defaults.
    assert file_options({"data": "sample"}) == file_options(ExperimentConfig())
    assert file_options(ExperimentConfig()) == {"date_column": "", "columns": "", "bad_bars": "error",
                                                "adjust_prices": True}
    with pytest.raises(ConfigError, match=r"`bad_bars` must be one of \('error', 'drop'\). Received: bad_bars='skip'"):
        apply_overrides(ExperimentConfig(), ["bad_bars=skip"])
