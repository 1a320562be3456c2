"""Predictions from a registry version: the training features, windows and model, batched or streaming.

    predictor = Predictor.from_registry("saved_models/shared_backbone/latest")
    scores = predictor.predict_panel(panel)        # every window, (symbol, timestamp) index
    latest = predictor.predict_latest(panel)       # the newest window of each symbol

    stream = predictor.stream(panel)               # keeps the last bars of each symbol
    latest = stream.update(new_bars)               # recomputes only the symbols that got bars

Features are computed by the code that trained the model
(`keras_synapse.features`, with the feature sets and reference symbols in the
metadata), checked against the feature names the model was trained on, and
windowed with the training `sequence_length`, never across a data gap. The
model runs in ONNX Runtime (`model.onnx`) and falls back to Keras
(`model.keras`) when the ONNX file is missing or does not load, saying so in
the log. TensorFlow is imported only for the Keras backend.

A symbol whose data or model fails gets a **neutral signal** (score 0,
uniform probabilities, `fallback=True` and the `reason`), logged as a warning,
instead of an exception that would stop every other symbol (seed 002: "return
neutral signal if model fails").

Streaming and the start of a series: `stream()` and `predict_latest()`
recompute features on a rolling buffer of each symbol's last bars, not on its
whole history. Features made of trailing windows (the `core`, `raw_ohlcv` and
`multiscale` sets) depend only on the last `warmup` bars, so a buffer of
`warmup - 1 + sequence_length` bars reproduces the batch values (to float
rounding). Exponentially smoothed indicators (TA-Lib's RSI, MACD, ATR, ADX in
`technical`) are seeded from the first bar they see and forget it only
geometrically, and the GARCH forecast of `pattern17`/`pattern14` refits on
the history it is given: their values from a buffer approach the batch values
only as the buffer grows. The default buffer is `sequence_length + 3 *
warmup - 1` bars: 619 for `technical`, ~420 bars beyond its 200-bar warm-up,
where the last window's values differ from the full-history ones by 4e-13 on
the sample. The GARCH sets do not converge that way (0.05 on a 0.13
volatility ratio with the default 778-bar buffer): for them pass a
`buffer_length` covering the whole history, or use `predict_panel`. Compare
`predict_latest` with `predict_panel` on your own data before trusting a
short buffer.
"""

import dataclasses
import logging
import os
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from keras_synapse.data.panel import OHLCV_COLUMNS, Panel, validate_bars
from keras_synapse.errors import DataError, SynapseError
from keras_synapse.windows.dataset import complete_windows

logger = logging.getLogger("keras_synapse.serving.inference")

BACKENDS = ("onnx", "onnx_int8", "keras")
DEFAULT_BATCH_SIZE = 4096
# Feature sets whose value at t is a function of a fixed number of trailing
# bars (rolling windows, differences, shifts): computing them on many symbols'
# buffers laid end to end gives, for each symbol's last `sequence_length`
# rows, exactly the per-symbol values, so the streaming path computes all
# symbols in one call. `tests/test_inference.py` checks this for each set.
STACKABLE_FEATURE_SETS = frozenset({"core", "raw_ohlcv", "multiscale"})
# Feature sets with a GARCH forecast refitted on the history it is given: a
# buffer gives different values from the full history (measured on the
# sample: up to 0.05 on a 0.13 volatility ratio with the default buffer).
HISTORY_DEPENDENT_FEATURE_SETS = frozenset({"pattern14", "pattern17"})


class FeatureMismatchError(SynapseError):
    """The features computed now are not the features the model was trained on."""


class ModelLoadError(SynapseError):
    """No backend could load the registry version's model."""


# --- What the model takes: from the metadata ---------------------------------------


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
    """

    sequence_length: int
    feature_set: str
    feature_names: tuple
    static_feature_set: str = ""
    static_feature_names: tuple = ()
    reference_symbols: tuple = ()
    max_gap_factor: float = 5.0

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

    @property
    def stackable(self):
        """True when every feature set is a fixed-length trailing-window function (see `STACKABLE_FEATURE_SETS`)."""
        parts = {part.strip() for name in self.feature_sets for part in name.split("+")}
        return parts <= STACKABLE_FEATURE_SETS and not self.needs_references

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
        """Computes the model's features for every symbol of `panel` with the training code.

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

        sequence = compute_features(panel, self.feature_set, self.references)
        static = compute_features(panel, self.static_feature_set, self.references) if self.static_feature_set else None
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
            ok = complete_windows(frame.index.asi8, self.sequence_length, self.max_gap_factor)
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


# --- Model backends ------------------------------------------------------------------


class _OnnxRunner:
    def __init__(self, path, intra_op_threads=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            options.intra_op_num_threads = int(intra_op_threads)
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_shapes = {tensor.name: tensor.shape for tensor in self.session.get_inputs()}
        self.output_names = [tensor.name for tensor in self.session.get_outputs()]

    def __call__(self, inputs):
        feed = {name: inputs[name] for name in self.input_shapes}
        return dict(zip(self.output_names, self.session.run(None, feed)))


class _KerasRunner:
    def __init__(self, path, intra_op_threads=None):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras

        if intra_op_threads:
            import tensorflow as tf

            try:
                tf.config.threading.set_intra_op_parallelism_threads(int(intra_op_threads))
            except RuntimeError:  # TensorFlow already initialized its thread pools
                logger.info("TensorFlow is already initialized; intra_op_threads is ignored.")
        self.model = keras.models.load_model(path, compile=False)
        self.input_shapes = {tensor.name: list(tensor.shape) for tensor in self.model.inputs}
        self.output_names = list(self.model.output_names)

    def __call__(self, inputs):
        outputs = self.model({name: inputs[name] for name in self.input_shapes}, training=False)
        if isinstance(outputs, Mapping):
            return {name: np.asarray(value) for name, value in outputs.items()}
        return {self.output_names[0]: np.asarray(outputs)}


def _primary_output(output_names, metadata):
    """The output whose task the metadata's label describes (the primary head of a multi-task model)."""
    if len(output_names) == 1:
        return output_names[0]
    config = metadata.get("config", {})
    heads = {}
    for pair in filter(None, (part.strip() for part in str(config.get("heads", "")).split(";"))):
        head, _, label = pair.partition("=")
        heads[head.strip()] = label.strip()
    primary = next((head for head, label in heads.items() if label == config.get("label")), None)
    for candidate in (primary, "prediction"):
        if candidate in output_names:
            return candidate
    return output_names[0]


# --- The predictor -----------------------------------------------------------------------


class Predictor:
    """A registry version ready to predict: its feature recipe, its task and a loaded model.

    Build it with `Predictor.from_registry`. Thread-safe for prediction (the
    ONNX Runtime session and the Keras model are only read); a
    `PredictionStream` is not, give each thread its own.

    Args:
        metadata: the version's `metadata.json` content.
        runner: a callable dict input name -> array to dict output name -> array.
        backend: the backend actually in use, `"onnx"`, `"onnx_int8"` or `"keras"`.
        version_dir: the registry version directory. Defaults to `None`.
        batch_size: most windows per model call. Defaults to `4096`.
    """

    def __init__(self, metadata, runner, backend, version_dir=None, batch_size=DEFAULT_BATCH_SIZE):
        from keras_synapse.labels.tasks import Task

        self.metadata = metadata
        self.inputs = ModelInputs.from_metadata(metadata)
        label = metadata["label"]
        self.task = Task(label=label["name"], kind=label["kind"], classes=tuple(label.get("classes", ())))
        self.backend = backend
        self.version_dir = None if version_dir is None else Path(version_dir)
        self.batch_size = int(batch_size)
        self._runner = runner
        self.output_names = list(runner.output_names)
        self.primary_output = _primary_output(self.output_names, metadata)
        self._check_input_shapes(runner.input_shapes)

    @classmethod
    def from_registry(cls, path, backend="onnx", intra_op_threads=None, batch_size=DEFAULT_BATCH_SIZE, fold=None):
        """Loads `saved_models/NAME/{VERSION|latest}`.

        Args:
            path: the registry version (or its `latest` link).
            backend: `"onnx"` (ONNX Runtime on `model.onnx`), `"onnx_int8"`
                (`model.int8.onnx` written by `python -m keras_synapse.export
                --quantize`) or `"keras"` (`model.keras`). An ONNX backend
                whose file is missing or fails to load falls back to Keras,
                with a warning. Defaults to `"onnx"`.
            intra_op_threads: threads of one model call (ONNX Runtime's
                `intra_op_num_threads`, TensorFlow's intra-op pool). `1` gives
                the lowest single-window latency and suits a server answering
                concurrent requests; `None` lets the runtime use every core,
                which pays off only for large batches on an otherwise idle
                machine (on a busy 2-core machine one thread streamed 500
                symbols in 33 ms, all cores in 65 ms). Defaults to `None`.
            batch_size: most windows per model call. Defaults to `4096`.
            fold: load the model of this cross-validation fold
                (`folds/fold_<k>.keras`, Keras backend) instead of the final
                refit, to reproduce the training run's test-fold predictions.
                Defaults to `None`.

        Raises:
            SynapseError: when `path` is not a registry version, the backend
                is unknown, or no backend can load the model.
        """
        from keras_synapse.serving.registry import read_metadata, resolve

        if backend not in BACKENDS:
            raise SynapseError(f"`backend` must be one of {BACKENDS}. Received: backend={backend!r}")
        version_dir = resolve(path)
        metadata = read_metadata(version_dir)
        if fold is not None:
            fold_path = version_dir / "folds" / f"fold_{fold}.keras"
            if not fold_path.is_file():
                raise SynapseError(f"{version_dir} has no model for fold {fold} ({fold_path} is missing).")
            return cls(metadata, _KerasRunner(fold_path, intra_op_threads), "keras", version_dir, batch_size)
        if backend != "keras":
            onnx_path = version_dir / ("model.onnx" if backend == "onnx" else "model.int8.onnx")
            try:
                if not onnx_path.is_file():
                    raise FileNotFoundError(f"{onnx_path} does not exist")
                runner = _OnnxRunner(onnx_path, intra_op_threads)
                return cls(metadata, runner, backend, version_dir, batch_size)
            except Exception as error:  # onnxruntime raises its own untyped errors
                logger.warning("ONNX backend unavailable for %s (%s); falling back to Keras (model.keras).",
                               version_dir, error)
        try:
            runner = _KerasRunner(version_dir / "model.keras", intra_op_threads)
        except Exception as error:
            raise ModelLoadError(f"Could not load a model from {version_dir}: {error}") from None
        return cls(metadata, runner, "keras", version_dir, batch_size)

    def _check_input_shapes(self, shapes):
        expected = {"sequence": [self.inputs.sequence_length, len(self.inputs.feature_names)]}
        if self.inputs.static_feature_set:
            expected["static"] = [len(self.inputs.static_feature_names)]
        if set(shapes) != set(expected):
            raise ModelLoadError(f"The model takes inputs {sorted(shapes)}; the metadata describes {sorted(expected)}.")
        for name, dims in expected.items():
            model_dims = list(shapes[name])[1:]
            if any(isinstance(size, int) and size != want for size, want in zip(model_dims, dims)):
                raise ModelLoadError(
                    f"The model's '{name}' input is {model_dims} per window; the metadata says {dims}.")

    # --- Outputs -> scores ------------------------------------------------------------

    @property
    def experiment(self):
        return self.metadata.get("experiment")

    @property
    def version(self):
        return self.metadata.get("version")

    def run(self, inputs):
        """Raw model outputs (dict output name -> array) for a dict of input arrays, in batches."""
        count = len(inputs["sequence"])
        if count <= self.batch_size:
            return self._runner({name: np.ascontiguousarray(values, dtype=np.float32)
                                 for name, values in inputs.items()})
        chunks = [self._runner({name: np.ascontiguousarray(values[start:start + self.batch_size], dtype=np.float32)
                                for name, values in inputs.items()}) for start in range(0, count, self.batch_size)]
        return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}

    def output_columns(self, outputs):
        """`score`, class probabilities (classifiers) and other heads' outputs as columns."""
        primary = np.asarray(outputs[self.primary_output])
        columns = {"score": self.task.scores(primary)}
        if self.task.kind != "regression":
            probabilities = primary.reshape(len(primary), -1).astype(np.float64)
            if self.task.kind == "binary":
                probabilities = np.concatenate([1 - probabilities, probabilities], axis=1)
            columns.update({f"probability_{name}": probabilities[:, index]
                            for index, name in enumerate(self.task.classes)})
        for name in self.output_names:
            if name != self.primary_output:
                values = np.asarray(outputs[name], dtype=np.float64).reshape(len(primary), -1)
                columns.update({name: values[:, 0]} if values.shape[1] == 1 else
                               {f"{name}_{index}": values[:, index] for index in range(values.shape[1])})
        return columns

    def neutral_columns(self, count):
        """The safe neutral signal: score 0, uniform class probabilities, other heads NaN."""
        columns = {"score": np.zeros(count)}
        if self.task.kind != "regression":
            columns.update({f"probability_{name}": np.full(count, 1 / len(self.task.classes))
                            for name in self.task.classes})
        for name in self.output_names:
            if name != self.primary_output:
                columns[name] = np.full(count, np.nan)
        return columns

    def predict_inputs(self, inputs):
        """Scores (and probabilities) of raw model inputs `{"sequence": [N, L, F][, "static": ...]}`."""
        return pd.DataFrame(self.output_columns(self.run(inputs)))

    # --- Batch ------------------------------------------------------------------------

    def predict_panel(self, panel):
        """Scores every complete window of every symbol in `panel`.

        Args:
            panel: a `Panel` (see `keras_synapse.data.load_panel`), with the
                reference symbols (e.g. the market index) if the model's
                feature set needs them.

        Returns:
            A frame indexed by (`symbol`, `timestamp`) of each window's last
            bar, with `score` and, for classifiers, `probability_<class>`.

        Raises:
            ConfigError: a reference symbol is missing.
            FeatureMismatchError: the features are not the model's.
        """
        windows = self.inputs.windows(panel)
        parts = [self.output_columns(self.run(windows.gather(np.arange(start, min(start + self.batch_size,
                                                                                  windows.count)))))
                 for start in range(0, windows.count, self.batch_size)]
        columns = ({name: np.concatenate([part[name] for part in parts]) for name in parts[0]} if parts
                   else self.neutral_columns(0))
        frame = pd.concat([windows.frame, pd.DataFrame(columns)], axis=1)
        return frame.set_index(["symbol", "timestamp"])

    def feature_rows(self, panel):
        """The feature rows of `panel` after the warm-up, sequence and static side by side (for drift checks)."""
        frames = []
        for symbol, (frame, static_frame) in self.inputs.feature_frames(panel).items():
            if static_frame is not None:
                static_frame = static_frame.loc[:, [name for name in static_frame.columns if name not in frame.columns]]
                frame = pd.concat([frame, static_frame], axis=1)
            frames.append(frame.assign(symbol=symbol).set_index("symbol", append=True))
        return pd.concat(frames) if frames else pd.DataFrame()

    # --- Latest window / streaming ------------------------------------------------------

    def stream(self, panel=None, buffer_length=None):
        """A `PredictionStream` holding the last `buffer_length` bars of each symbol of `panel`."""
        return PredictionStream(self, panel, buffer_length)

    def predict_latest(self, panel, buffer_length=None):
        """The newest window of each symbol, computed on each symbol's last bars only.

        Args:
            panel: a `Panel`.
            buffer_length: bars of history per symbol to compute features on.
                Defaults to `sequence_length + 3 * warmup - 1` (see the module
                docstring).

        Returns:
            A frame indexed by `symbol` with the window's `timestamp`, `score`,
            probabilities for classifiers, `fallback` and `reason` (empty
            unless `fallback`).
        """
        return self.stream(panel, buffer_length).latest()

    def describe(self):
        """A JSON-ready summary of the model: experiment, version, label, features, metrics, ONNX parity."""
        summary = self.metadata.get("metrics", {}).get("summary", {})
        headline = {name: summary[name].get("mean") if isinstance(summary.get(name), dict) else summary.get(name)
                    for name in ("directional_accuracy", "ic", "rank_ic", "accuracy", "f1", "mse") if name in summary}
        return {
            "experiment": self.experiment,
            "version": self.version,
            "backend": self.backend,
            "label": self.metadata.get("label"),
            "inputs": {"sequence_length": self.inputs.sequence_length, "feature_set": self.inputs.feature_set,
                       "feature_names": list(self.inputs.feature_names),
                       "static_feature_set": self.inputs.static_feature_set or None,
                       "static_feature_names": list(self.inputs.static_feature_names),
                       "reference_symbols": self.inputs.references, "required_bars": self.inputs.required_bars},
            "outputs": {"primary": self.primary_output, "all": self.output_names},
            "metrics_summary": headline,
            "verdict": summary.get("verdict"),
            "onnx": self.metadata.get("onnx"),
            "onnx_int8": self.metadata.get("onnx_int8"),
            "data": {key: self.metadata.get("data", {}).get(key) for key in ("spec", "start", "end", "fingerprint")},
            "drift_reference": "drift_reference" in self.metadata,
            "parameters": self.metadata.get("parameters"),
        }


class PredictionStream:
    """Per-symbol rolling buffers of raw bars, scored as new bars arrive.

    Each symbol keeps its last `buffer_length` bars. `update(new_bars)`
    appends bars (a bar stamped like the buffer's last bar replaces it, a
    correction of a still-forming bar; older bars are ignored with a
    warning), recomputes the features of the updated symbols on their
    buffers only, and scores each one's newest window in one model call.
    Feature sets in `STACKABLE_FEATURE_SETS` are computed for all updated
    symbols in one vectorized call on their buffers laid end to end (see the
    module docstring for why that is exact); others symbol by symbol.

    Not thread-safe: give each thread its own stream.

    Args:
        predictor: a `Predictor`.
        panel: a `Panel` whose last bars seed the buffers, or `None`.
            Defaults to `None`.
        buffer_length: bars kept per symbol. Defaults to the predictor's
            `sequence_length + 3 * warmup - 1`.

    Raises:
        ConfigError: when `buffer_length` is shorter than one window needs.
    """

    def __init__(self, predictor, panel=None, buffer_length=None):
        from keras_synapse.errors import ConfigError

        self.predictor = predictor
        inputs = predictor.inputs
        self.buffer_length = int(buffer_length or inputs.default_buffer_length())
        if self.buffer_length < inputs.required_bars:
            raise ConfigError(
                f"`buffer_length` must be >= {inputs.required_bars} (feature warm-up {inputs.warmup} - 1 + "
                f"sequence_length {inputs.sequence_length}). Received: buffer_length={self.buffer_length}")
        self._timestamps = {}
        self._values = {}
        parts = {part.strip() for name in inputs.feature_sets for part in name.split("+")}
        if parts & HISTORY_DEPENDENT_FEATURE_SETS:
            logger.warning("Feature set(s) %s refit a GARCH model on the history they are given: streaming values "
                           "on a %d-bar buffer differ from full-history (batch) values; pass a buffer_length that "
                           "covers the whole history for exact agreement.",
                           sorted(parts & HISTORY_DEPENDENT_FEATURE_SETS), self.buffer_length)
        if panel is not None:
            for symbol, frame in panel.items():
                tail = frame.iloc[-self.buffer_length:]
                self._timestamps[symbol] = tail.index.tz_convert("UTC").as_unit("ns").asi8.copy()
                self._values[symbol] = tail[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64, copy=True)

    @property
    def symbols(self):
        return tuple(self._timestamps)

    def bars(self, symbol):
        """The buffered bars of `symbol` as a canonical OHLCV frame."""
        index = pd.DatetimeIndex(self._timestamps[symbol]).tz_localize("UTC").rename("timestamp")
        return pd.DataFrame(self._values[symbol], index=index, columns=list(OHLCV_COLUMNS))

    # --- Appending bars ---------------------------------------------------------------

    def update(self, new_bars, on_invalid="neutral"):
        """Appends new bars and returns the newest window's prediction of each symbol that got bars.

        Args:
            new_bars: a `Panel`, a dict symbol -> frame of bars (a
                `DatetimeIndex` or a `timestamp` column), or one long frame
                with a `symbol` column. Bars are validated like
                `keras_synapse.data.validate_bars` (one vectorized pass; the
                validator itself only runs to explain a failure).
            on_invalid: `"neutral"`: a symbol whose bars fail gets the
                neutral signal with the validation message, and its buffer is
                left as it was; `"raise"`: raise the `DataError` instead,
                before any buffer changes. Defaults to `"neutral"`.

        Returns:
            A frame like `Predictor.predict_latest`, one row per symbol in
            `new_bars`.

        Raises:
            DataError: for unparsable input, or invalid bars with
                `on_invalid="raise"`.
        """
        if on_invalid not in ("neutral", "raise"):
            raise SynapseError(f"`on_invalid` must be 'neutral' or 'raise'. Received: on_invalid={on_invalid!r}")
        arrays, suspicious = _bars_as_arrays(new_bars)
        rejected = {}
        for symbol in suspicious:
            problem = _validation_message(symbol, *arrays[symbol])
            if problem and on_invalid == "raise":
                raise DataError(problem)
            if problem:
                rejected[symbol] = problem
        for symbol, (timestamps, values) in arrays.items():
            if symbol not in rejected:
                self._append(symbol, timestamps, values)
        rows = self.latest([symbol for symbol in arrays if symbol not in rejected])
        if rejected:
            neutral = self._neutral_rows(list(rejected), [f"invalid bars: {reason}" for reason in rejected.values()])
            rows = pd.concat([rows, neutral]).loc[list(arrays)]
        return rows

    def _append(self, symbol, timestamps, values):
        if symbol not in self._timestamps:
            self._keep_tail(symbol, timestamps, values)
            return
        old_timestamps, old_values = self._timestamps[symbol], self._values[symbol]
        last = old_timestamps[-1]
        stale = timestamps < last
        if stale.any():
            logger.warning("Symbol '%s': %d bar(s) at or before %s ignored (the buffer already ends at %s).",
                           symbol, int(stale.sum()), pd.Timestamp(int(timestamps[stale][0]), tz="UTC"),
                           pd.Timestamp(int(last), tz="UTC"))
            timestamps, values = timestamps[~stale], values[~stale]
        if len(timestamps) and timestamps[0] == last:  # a correction of the still-forming last bar
            old_timestamps, old_values = old_timestamps[:-1], old_values[:-1]
        keep = self.buffer_length - len(timestamps)
        if keep <= 0:
            self._keep_tail(symbol, timestamps, values)
        else:
            self._timestamps[symbol] = np.concatenate([old_timestamps[-keep:], timestamps])
            self._values[symbol] = np.concatenate([old_values[-keep:], values])

    def _keep_tail(self, symbol, timestamps, values):
        self._timestamps[symbol] = timestamps[-self.buffer_length:]
        self._values[symbol] = values[-self.buffer_length:]

    # --- Scoring the newest windows ------------------------------------------------------

    def latest(self, symbols=None):
        """The newest window's prediction of `symbols` (default: every buffered symbol).

        Returns:
            A frame indexed by `symbol` with `timestamp`, `score`,
            probabilities for classifiers, `fallback` and `reason`.
        """
        symbols = list(self._timestamps if symbols is None else symbols)
        inputs = self.predictor.inputs
        length = inputs.sequence_length
        reasons = {}
        ready = []
        for symbol in symbols:
            if symbol not in self._timestamps:
                reasons[symbol] = "no bars for this symbol"
            elif len(self._timestamps[symbol]) < inputs.required_bars:
                reasons[symbol] = (f"needs {inputs.required_bars} bars (feature warm-up {inputs.warmup} - 1 + "
                                   f"sequence_length {length}), has {len(self._timestamps[symbol])}")
            else:
                ready.append(symbol)
        ready = self._without_gaps(ready, reasons)
        sequence, static, names = self._last_windows(ready, reasons)
        columns, predicted = None, []
        if names:
            model_inputs = {"sequence": sequence}
            if static is not None:
                model_inputs["static"] = static
            try:
                columns = self.predictor.output_columns(self.predictor.run(model_inputs))
                predicted = names
            except Exception as error:  # any model failure must end in the neutral signal, not a crash
                logger.error("Model failed on %d window(s): %s", len(names), error)
                reasons.update({symbol: f"model failed: {error}" for symbol in names})
        frames = []
        if predicted:
            last_bars = pd.DatetimeIndex([self._timestamps[symbol][-1] for symbol in predicted]).tz_localize("UTC")
            frames.append(pd.DataFrame({
                "timestamp": last_bars,
                **columns, "fallback": False, "reason": ""}, index=pd.Index(predicted, name="symbol")))
        failed = [symbol for symbol in symbols if symbol in reasons]
        if failed:
            frames.append(self._neutral_rows(failed, [reasons[symbol] for symbol in failed]))
        if not frames:
            return self._neutral_rows([], [])
        return pd.concat(frames).loc[symbols]

    def _neutral_rows(self, symbols, reasons):
        for symbol, reason in zip(symbols, reasons):
            logger.warning("Symbol '%s': neutral signal (%s).", symbol, reason)
        timestamps = [pd.Timestamp(int(self._timestamps[symbol][-1]), tz="UTC") if symbol in self._timestamps
                      else pd.NaT for symbol in symbols]
        return pd.DataFrame({"timestamp": pd.DatetimeIndex(timestamps, tz="UTC") if symbols else
                             pd.DatetimeIndex([], tz="UTC"), **self.predictor.neutral_columns(len(symbols)),
                             "fallback": True, "reason": list(reasons)}, index=pd.Index(symbols, name="symbol"))

    def _without_gaps(self, symbols, reasons):
        """Drops symbols whose newest window spans a data gap (the training rule), noting why."""
        factor, length = self.predictor.inputs.max_gap_factor, self.predictor.inputs.sequence_length
        if factor <= 0 or length < 2 or not symbols:
            return symbols
        if len({len(self._timestamps[symbol]) for symbol in symbols}) == 1:  # the usual case: one matrix
            spacings = np.diff(np.stack([self._timestamps[symbol] for symbol in symbols]), axis=1)
        else:
            spacings = [np.diff(self._timestamps[symbol]) for symbol in symbols]
        kept = []
        for symbol, spacing, median in zip(symbols, spacings, _medians(spacings)):
            window_spacing = spacing[-(length - 1):]
            if len(spacing) >= 2 and window_spacing.max() > factor * median:
                reasons[symbol] = self._gap_reason(symbol, window_spacing, median, factor)
            else:
                kept.append(symbol)
        return kept

    def _gap_reason(self, symbol, window_gaps, median, factor):
        timestamps = self._timestamps[symbol][-len(window_gaps) - 1:]
        position = int(np.argmax(window_gaps))
        return (f"data gap in the newest window: {pd.Timestamp(int(timestamps[position]), tz='UTC')} to "
                f"{pd.Timestamp(int(timestamps[position + 1]), tz='UTC')} is more than {factor:g} x the median "
                f"bar spacing {pd.Timedelta(int(median))}")

    def _last_windows(self, symbols, reasons):
        """The newest window of each symbol: `(sequence [S, L, F], static [S, Fs] or None, symbols kept)`."""
        if not symbols:
            return None, None, []
        inputs = self.predictor.inputs
        try:
            if inputs.stackable:
                sequence, static, timestamps = self._stacked_features(symbols)
            else:
                sequence, static, timestamps = self._per_symbol_features(symbols, reasons)
        except SynapseError:
            raise
        except Exception as error:  # a feature function failing on odd bars: neutral for these symbols
            logger.error("Feature computation failed: %s", error)
            reasons.update({symbol: f"feature computation failed: {error}" for symbol in symbols})
            return None, None, []
        kept = [symbol for symbol in symbols if symbol in sequence]
        if not kept:
            return None, None, []
        sequence_stack = np.stack([sequence[symbol] for symbol in kept])
        static_stack = None if static is None else np.stack([static[symbol] for symbol in kept])
        finite = np.isfinite(sequence_stack).all(axis=(1, 2))
        if static_stack is not None:
            finite &= np.isfinite(static_stack).all(axis=1)
        for position in np.flatnonzero(~finite):
            symbol = kept[position]
            reasons[symbol] = self._non_finite_reason(symbol, sequence_stack[position],
                                                      None if static_stack is None else static_stack[position],
                                                      timestamps[symbol])
        kept = [symbol for symbol, ok in zip(kept, finite) if ok]
        return (sequence_stack[finite].astype(np.float32),
                None if static_stack is None else static_stack[finite].astype(np.float32), kept)

    def _non_finite_reason(self, symbol, window, static_row, timestamps):
        inputs = self.predictor.inputs
        bad = ~np.isfinite(window)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            name, when = inputs.feature_names[column], timestamps[row]
        else:
            column = int(np.argmax(~np.isfinite(static_row)))
            name, when = inputs.static_feature_names[column], timestamps[-1]
        return f"feature '{name}' is NaN or infinite at {pd.Timestamp(int(when), tz='UTC')}"

    def _stacked_features(self, symbols):
        """Features of all `symbols` in one call on their buffers laid end to end (stackable sets only)."""
        from keras_synapse.features import get_feature_set

        inputs = self.predictor.inputs
        length = inputs.sequence_length
        lengths = np.array([len(self._timestamps[symbol]) for symbol in symbols])
        ends = np.cumsum(lengths) - 1
        bars = pd.DataFrame(np.concatenate([self._values[symbol] for symbol in symbols]), columns=list(OHLCV_COLUMNS))
        rows = ends[:, None] + np.arange(-length + 1, 1)
        frame = get_feature_set(inputs.feature_set).compute(bars, {})
        values = frame[inputs.check_columns(frame.columns, "sequence")].to_numpy(dtype=np.float64)[rows]
        sequence = dict(zip(symbols, values))
        static = None
        if inputs.static_feature_set:
            static_frame = get_feature_set(inputs.static_feature_set).compute(bars, {})
            static_values = static_frame[inputs.check_columns(static_frame.columns, "static")].to_numpy(
                dtype=np.float64)[ends]
            static = dict(zip(symbols, static_values))
        timestamps = {symbol: self._timestamps[symbol][-length:] for symbol in symbols}
        return sequence, static, timestamps

    def _per_symbol_features(self, symbols, reasons):
        """Features symbol by symbol on each buffer, with reference series from the buffers."""
        from keras_synapse.features import get_feature_set, resolve_references

        inputs = self.predictor.inputs
        length = inputs.sequence_length
        frames = {}
        references = {}
        for role, symbol in inputs.references.items():
            if symbol in self._timestamps:
                frames[symbol] = self.bars(symbol)
        sets = [(get_feature_set(inputs.feature_set), "sequence")]
        if inputs.static_feature_set:
            sets.append((get_feature_set(inputs.static_feature_set), "static"))
        for feature_set, _ in sets:
            references[feature_set.name] = resolve_references(feature_set, frames, inputs.references)
        sequence, static, timestamps = {}, {} if inputs.static_feature_set else None, {}
        for symbol in symbols:
            bars = frames.get(symbol)
            if bars is None:
                bars = self.bars(symbol)
            try:
                computed = []
                for feature_set, part in sets:
                    frame = feature_set.compute(bars, references[feature_set.name])
                    computed.append(frame[inputs.check_columns(frame.columns, part)])
            except SynapseError as error:
                if isinstance(error, FeatureMismatchError):
                    raise
                reasons[symbol] = str(error)
                continue
            frame = computed[0]
            if len(computed) > 1:
                common = frame.index.intersection(computed[1].index)
                frame, static_frame = frame.loc[common], computed[1].loc[common]
                static[symbol] = static_frame.to_numpy(dtype=np.float64)[-1]
            if len(frame) < length:
                reasons[symbol] = f"only {len(frame)} aligned feature rows, the window needs {length}"
                static.pop(symbol, None) if static is not None else None
                continue
            sequence[symbol] = frame.to_numpy(dtype=np.float64)[-length:]
            timestamps[symbol] = frame.index[-length:].as_unit("ns").asi8
        return sequence, static, timestamps


def _medians(spacings):
    if isinstance(spacings, np.ndarray):
        return np.median(spacings, axis=1) if spacings.shape[1] else np.zeros(len(spacings))
    return [np.median(spacing) if len(spacing) else 0 for spacing in spacings]


# --- New bars: parsed and checked in one vectorized pass -----------------------------------


def _bars_as_arrays(new_bars):
    """Parses new bars to dict symbol -> (int64 ns UTC timestamps, float64 [n, 5] OHLCV), sorted by time.

    Returns:
        The dict and the set of symbols whose bars fail a fast vectorized
        check (to be confirmed, and explained, by `validate_bars`).
    """
    if isinstance(new_bars, pd.DataFrame):
        if "symbol" not in new_bars.columns:
            raise DataError(f"New bars as one frame need a 'symbol' column. Received columns: {list(new_bars.columns)}")
        frame = new_bars
        if "timestamp" in frame.columns:
            stamps = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"].to_numpy(), utc=False))
        elif isinstance(frame.index, pd.DatetimeIndex):
            stamps = frame.index
        else:
            raise DataError("New bars need a 'timestamp' column or a DatetimeIndex.")
        missing = [name for name in OHLCV_COLUMNS if name not in frame.columns]
        if missing:
            raise DataError(f"New bars: missing required column(s) {missing}. Received columns: {list(frame.columns)}")
        timestamps = _utc_nanoseconds(stamps, "new bars")
        values = _numeric(frame)
        symbols = frame["symbol"].astype(str).to_numpy()
        order = np.lexsort((timestamps, symbols))
        symbols, timestamps, values = symbols[order], timestamps[order], values[order]
        names, starts = np.unique(symbols, return_index=True)
        bounds = np.append(starts[1:], len(symbols))
        bad_rows = _suspicious_rows(values)
        bad_rows[1:] |= (symbols[1:] == symbols[:-1]) & (np.diff(timestamps) <= 0)
        suspicious = set(symbols[bad_rows])
        parts = {name: (timestamps[start:end], values[start:end]) for name, start, end in zip(names, starts, bounds)}
        # Keep the symbols in their order of first appearance.
        return {name: parts[name] for name in dict.fromkeys(frame["symbol"].astype(str))}, suspicious
    if isinstance(new_bars, Mapping):
        arrays, suspicious = {}, set()
        for symbol, frame in new_bars.items():
            symbol = str(symbol)
            if not isinstance(frame.index, pd.DatetimeIndex):
                from keras_synapse.data.panel import standardize_columns

                frame = standardize_columns(frame, f"new bars of '{symbol}'")
            missing = [name for name in OHLCV_COLUMNS if name not in frame.columns]
            if missing:
                raise DataError(f"Symbol '{symbol}': missing required column(s) {missing}. "
                                f"Received columns: {list(frame.columns)}")
            timestamps, values = _utc_nanoseconds(frame.index, f"symbol '{symbol}'"), _numeric(frame)
            if _suspicious_rows(values).any() or (np.diff(timestamps) <= 0).any():
                suspicious.add(symbol)
            arrays[symbol] = (timestamps, values)
        return arrays, suspicious
    raise DataError(f"New bars must be a Panel, a dict symbol -> frame or a long frame with a 'symbol' column. "
                    f"Received: {type(new_bars).__name__}")


def _numeric(frame):
    """The OHLCV columns as float64; non-numeric values become NaN (and fail the check with their message)."""
    try:
        return frame[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        return frame[list(OHLCV_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)


def _utc_nanoseconds(index, where):
    if index.tz is None:
        logger.warning("%s: naive timestamps taken as UTC.", where[0].upper() + where[1:])
        index = index.tz_localize("UTC")
    return index.tz_convert("UTC").as_unit("ns").asi8


def _suspicious_rows(values):
    """Rows failing a check stricter than `validate_bars` (no rounding slack): NaN, prices <= 0, ranges."""
    opens, highs, lows, closes, volumes = values.T
    with np.errstate(invalid="ignore"):
        return (~np.isfinite(values).all(axis=1) | (values[:, :4] <= 0).any(axis=1) | (volumes < 0) | (highs < lows)
                | (opens > highs) | (opens < lows) | (closes > highs) | (closes < lows))


def _validation_message(symbol, timestamps, values):
    """`None` when `validate_bars` accepts the bars, else its message."""
    index = pd.DatetimeIndex(timestamps).tz_localize("UTC").rename("timestamp")
    try:
        validate_bars(pd.DataFrame(values, index=index, columns=list(OHLCV_COLUMNS)), symbol)
    except DataError as error:
        return str(error)
    return None
