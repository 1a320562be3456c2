"""A model's inputs rebuilt from its model card: the feature recipe, checked against the trained feature names,
and the windows it scores (never across a data gap).
"""

import dataclasses
import logging
import types

import numpy as np
import pandas as pd

from keras_synapse.data.panel import Panel
from keras_synapse.errors import SynapseError
from keras_synapse.windows.dataset import window_ok
from keras_synapse.windows.exchange_calendar import ExchangeCalendars
from keras_synapse.windows.sessions import SessionHours

# One logger for the whole inference path, whichever module speaks.
logger = logging.getLogger("keras_synapse.serving.inference")


class FeatureMismatchError(SynapseError):
    """The features computed now are not the features the model was trained on."""


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """The inputs of a registry model as recorded in its metadata.

    Attributes:
        sequence_length: bars per window.
        feature_set: the sequence feature set name (e.g. `"core"`).
        feature_names: the sequence feature columns, in model order.
        static_feature_set: the static (last-bar) feature set, `""` for none.
        static_feature_names: the static feature columns, in model order.
        reference_symbols: `(role, symbol)` pairs for cross-asset features.
        max_gap_factor: windows never span a gap longer than this multiple
            of the symbol's median bar spacing (`0`: no check).
        sessions: the `SessionHours` whose closures are not gaps.
        exchange_calendars: the `ExchangeCalendars` daily bars' gaps are
            counted in (holidays are not gaps).
        universe_features, feature_cross_section: the cross-sectional
            inputs the model was trained on (`features.cross_section`).
    """

    sequence_length: int
    feature_set: str
    feature_names: tuple
    static_feature_set: str = ""
    static_feature_names: tuple = ()
    reference_symbols: tuple = ()
    max_gap_factor: float = 5.0
    sessions: SessionHours = SessionHours()
    exchange_calendars: ExchangeCalendars = ExchangeCalendars()
    universe_features: bool = False
    feature_cross_section: str = ""

    @property
    def cross_sectional(self):
        """True when a symbol's inputs depend on the other symbols of the date (it needs the universe)."""
        return bool(self.universe_features or self.feature_cross_section)

    @classmethod
    def from_metadata(cls, metadata):
        """Reads `metadata["inputs"]` and the config's reference symbols and gap factor."""
        from keras_synapse.config import reference_symbols

        config = metadata.get("config", {})
        sequence = metadata["inputs"]["sequence"]
        static = metadata["inputs"].get("static")
        roles = reference_symbols(types.SimpleNamespace(
            **{f"{role}_symbol": config.get(f"{role}_symbol", "") for role in ("market", "sector", "vix", "vix3m")}))
        return cls(
            sequence_length=int(sequence["shape"][1]),
            feature_set=sequence["feature_set"],
            feature_names=tuple(sequence["feature_names"]),
            static_feature_set=static["feature_set"] if static else "",
            static_feature_names=tuple(static["feature_names"]) if static else (),
            reference_symbols=tuple((role, symbol) for role, symbol in roles.items() if symbol),
            max_gap_factor=float(config.get("max_gap_factor", 5.0)),
            sessions=SessionHours.from_dict(metadata.get("windows", {}).get("sessions")),
            exchange_calendars=ExchangeCalendars.parse(config.get("exchange_calendar", "")),
            universe_features=bool(config.get("universe_features", False)),
            feature_cross_section=str(config.get("feature_cross_section", "")),
        )

    @property
    def references(self):
        return dict(self.reference_symbols)

    @property
    def feature_sets(self):
        return tuple(name for name in (self.feature_set, self.static_feature_set) if name)

    @property
    def warmup(self):
        """Bars of history the feature sets need before their first valid row."""
        from keras_synapse.features import get_feature_set

        return max(get_feature_set(name).warmup for name in self.feature_sets)

    @property
    def required_bars(self):
        """The fewest bars that give one window: `warmup - 1 + sequence_length`."""
        return self.warmup - 1 + self.sequence_length

    @property
    def needs_references(self):
        from keras_synapse.features import get_feature_set

        return any(get_feature_set(name).references for name in self.feature_sets)

    def reference_inputs(self, symbols):
        """The symbols among `symbols` the model reads as reference series: inputs, never predicted."""
        from keras_synapse.features import get_feature_set
        from keras_synapse.features.references import reference_inputs

        roles = {role for name in self.feature_sets for role in get_feature_set(name).references}
        return reference_inputs(roles, self.references, symbols)

    @property
    def stackable(self):
        """True when every feature set is a fixed-length trailing-window function (`FeatureSet.stackable`)."""
        from keras_synapse.features import get_feature_set

        return all(get_feature_set(name).stackable for name in self.feature_sets) and not self.needs_references

    @property
    def history_dependent_sets(self):
        """The feature sets whose values depend on all the history given (`FeatureSet.history_dependent`)."""
        from keras_synapse.features import FEATURE_SETS

        parts = {part.strip() for name in self.feature_sets for part in name.split("+")}
        return sorted(part for part in parts if FEATURE_SETS[part].history_dependent)

    def default_buffer_length(self):
        """`sequence_length + 3 * warmup - 1` bars (see the module docstring)."""
        return self.sequence_length + 3 * self.warmup - 1

    def check_columns(self, columns, part="sequence"):
        """Returns the model's feature names for `part` after checking `columns` holds exactly them.

        Raises:
            FeatureMismatchError: naming the missing and the unexpected features.
        """
        expected = self.feature_names if part == "sequence" else self.static_feature_names
        columns = [str(column) for column in columns]
        missing = [name for name in expected if name not in columns]
        extra = [name for name in columns if name not in expected]
        if missing or extra:
            feature_set = self.feature_set if part == "sequence" else self.static_feature_set
            raise FeatureMismatchError(
                f"The {part} features do not match the model's: the model was trained on {len(expected)} features "
                f"of '{feature_set}'; received {len(columns)}. Missing: {missing or 'none'}; unexpected: "
                f"{extra or 'none'}. Retrain the model, or predict with the keras_synapse version that trained it "
                f"(see 'packages' in metadata.json)."
            )
        return list(expected)

    def feature_frames(self, panel):
        """Computes the model's features for every symbol of `panel` but its reference series, as in training.

        Returns:
            A dict symbol -> `(sequence_frame, static_frame or None)`, rows
            aligned (a bar missing from either is dropped from both), columns
            in model order.

        Raises:
            ConfigError: when a cross-asset feature needs a reference symbol
                the panel lacks.
            FeatureMismatchError: when the computed columns are not the
                model's.
        """
        from keras_synapse.features import compute_features
        from keras_synapse.features.cross_section import cross_sectional_inputs

        # The reference series are inputs, as in training: not predicted.
        inputs_only = self.reference_inputs(panel.symbols)
        traded = panel.select([symbol for symbol in panel.symbols if symbol not in inputs_only])
        sequence = cross_sectional_inputs(compute_features(traded, self.feature_set, self.references, panel),
                                          self.universe_features, self.feature_cross_section)
        static = (compute_features(traded, self.static_feature_set, self.references, panel)
                  if self.static_feature_set else None)
        frames = {}
        for symbol, frame in sequence.items():
            frame = frame[self.check_columns(frame.columns, "sequence")]
            static_frame = None
            if static is not None:
                static_frame = static[symbol][self.check_columns(static[symbol].columns, "static")]
                common = frame.index.intersection(static_frame.index)
                frame, static_frame = frame.loc[common], static_frame.loc[common]
            frames[symbol] = (frame, static_frame)
        return frames

    def windows(self, panel_or_frames):
        """Every complete window of a panel (or of `feature_frames` output), gathered lazily.

        A window ends at each row with `sequence_length - 1` rows of the same
        symbol before it, no data gap in it (the training rule) and finite
        features; windows touching non-finite features are skipped with a
        warning naming the symbol, feature and time.

        Returns:
            A `Windows`.
        """
        frames = panel_or_frames if not isinstance(panel_or_frames, Panel) else self.feature_frames(panel_or_frames)
        parts, offset = [], 0
        for symbol, (frame, static_frame) in frames.items():
            values = frame.to_numpy(dtype=np.float32)
            static_values = None if static_frame is None else static_frame.to_numpy(dtype=np.float32)
            ok = window_ok(symbol, frame.index, self.sequence_length, self.max_gap_factor, self.sessions,
                           self.exchange_calendars)
            bad_rows = ~np.isfinite(values).all(axis=1)
            if static_values is not None:
                bad_rows |= ~np.isfinite(static_values).all(axis=1)
            if bad_rows.any():
                row = int(np.argmax(bad_rows))
                source, names = (values, frame.columns) if not np.isfinite(values[row]).all() else (
                    static_values, static_frame.columns)
                column = int(np.argmax(~np.isfinite(source[row])))
                logger.warning("Symbol '%s', feature '%s': NaN or infinite value at %s; windows containing it "
                               "are skipped.", symbol, names[column], frame.index[row])
                touched = np.cumsum(bad_rows)
                before = np.concatenate([np.zeros(self.sequence_length, dtype=touched.dtype), touched])[:len(touched)]
                ok &= touched - before == 0
            ends = np.flatnonzero(ok)
            parts.append({
                "features": values, "static": static_values, "ends": ends + offset,
                "symbols": np.full(len(ends), symbol, dtype=object),
                "timestamps": frame.index.tz_convert("UTC").as_unit("ns").asi8[ends],
            })
            offset += len(values)
        return Windows(
            features=np.concatenate([part["features"] for part in parts]) if parts else
            np.zeros((0, len(self.feature_names)), np.float32),
            static_features=None if not self.static_feature_set or not parts else
            np.concatenate([part["static"] for part in parts]),
            ends=np.concatenate([part["ends"] for part in parts]) if parts else np.zeros(0, np.int64),
            frame=pd.DataFrame({
                "symbol": np.concatenate([part["symbols"] for part in parts]) if parts else np.zeros(0, object),
                "timestamp": pd.DatetimeIndex(np.concatenate([part["timestamps"] for part in parts]) if parts
                                              else np.zeros(0, np.int64)).tz_localize("UTC"),
            }),
            sequence_length=self.sequence_length,
        )


@dataclasses.dataclass(frozen=True)
class Windows:
    """Stacked feature rows and the rows that end a window; windows are gathered on demand.

    Attributes:
        features: float32 `[rows, features]`.
        static_features: float32 `[rows, static features]` or `None`.
        ends: int64 row of each window's last bar.
        frame: `symbol` and `timestamp` (UTC) of each window.
        sequence_length: bars per window.
    """

    features: np.ndarray
    static_features: np.ndarray
    ends: np.ndarray
    frame: pd.DataFrame
    sequence_length: int

    @property
    def count(self):
        return len(self.ends)

    def gather(self, positions=None):
        """The model inputs of windows `positions` (indices into `ends`; all by default)."""
        ends = self.ends if positions is None else self.ends[positions]
        inputs = {"sequence": self.features[ends[:, None] + np.arange(-self.sequence_length + 1, 1)]}
        if self.static_features is not None:
            inputs["static"] = self.static_features[ends]
        return inputs

    @property
    def inputs(self):
        return self.gather()
