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

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from keras_synapse.errors import SynapseError
from keras_synapse.serving.model_inputs import ModelInputs
from keras_synapse.serving.probes import check_probes
from keras_synapse.serving.runners import KerasRunner, ModelLoadError, OnnxRunner
from keras_synapse.serving.stream import PredictionStream

logger = logging.getLogger("keras_synapse.serving.inference")


BACKENDS = ("onnx", "onnx_int8", "keras")


DEFAULT_BATCH_SIZE = 4096


def primary_output_name(output_names, metadata):
    """The output whose task the metadata's label describes (the primary head of a multi-task model)."""
    if len(output_names) == 1:
        return output_names[0]
    from keras_synapse.labels.heads import split_head_horizon

    config = metadata.get("config", {})
    heads = {}
    for pair in filter(None, (part.strip() for part in str(config.get("heads", "")).split(";"))):
        head, _, label = pair.partition("=")
        heads[head.strip()] = label.strip()
    horizon = config.get("horizon", 5)
    primary = next((head for head, label in heads.items()
                    if split_head_horizon(label, horizon, head) == (config.get("label"), horizon)), None)
    for candidate in (primary, "prediction"):
        if candidate in output_names:
            return candidate
    return output_names[0]


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
        self.primary_output = primary_output_name(self.output_names, metadata)
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

        Every model file is checked against the SHA-256 its model card
        recorded, and the loaded model is run on the card's probe windows
        and compared with what it answered at registration
        (`keras_synapse.serving.probes`): an ONNX file that fails either is
        treated as one that does not load (a warning, then Keras, itself
        checked); a `.keras` file that fails is refused.

        Raises:
            SynapseError: when `path` is not a registry version, the backend
                is unknown, or no backend can load the model.
            ModelCardError: when the card is damaged or edited, or
                `model.keras` (or the fold's model) is not the registered file.
        """
        from keras_synapse.serving.registry import read_metadata, resolve

        if backend not in BACKENDS:
            raise SynapseError(f"`backend` must be one of {BACKENDS}. Received: backend={backend!r}")
        version_dir = resolve(path)
        metadata = read_metadata(version_dir)
        if metadata.get("model_format") == "tree":
            return cls._tree_from_registry(metadata, version_dir, backend, intra_op_threads, batch_size, fold)
        if metadata.get("model_format") == "stack":
            return cls._stack_from_registry(metadata, version_dir, backend, intra_op_threads, batch_size, fold)
        if fold is not None:
            fold_path = version_dir / "folds" / f"fold_{fold}.keras"
            if not fold_path.is_file():
                raise SynapseError(f"{version_dir} has no model for fold {fold} ({fold_path} is missing).")
            metadata.verify_file(version_dir, f"folds/fold_{fold}.keras")
            return cls(metadata, KerasRunner(fold_path, intra_op_threads), "keras", version_dir, batch_size)
        if backend != "keras":
            onnx_path = version_dir / ("model.onnx" if backend == "onnx" else "model.int8.onnx")
            try:
                if not onnx_path.is_file():
                    raise FileNotFoundError(f"{onnx_path} does not exist")
                metadata.verify_file(version_dir, onnx_path.name)
                runner = OnnxRunner(onnx_path, intra_op_threads)
                check_probes(metadata, runner, backend, onnx_path)
                return cls(metadata, runner, backend, version_dir, batch_size)
            except Exception as error:  # onnxruntime raises its own untyped errors
                logger.warning("ONNX backend unavailable for %s (%s); falling back to Keras (model.keras).",
                               version_dir, error)
        metadata.verify_file(version_dir, "model.keras")
        try:
            runner = KerasRunner(version_dir / "model.keras", intra_op_threads)
        except Exception as error:
            raise ModelLoadError(f"Could not load a model from {version_dir}: {error}") from None
        check_probes(metadata, runner, "keras", version_dir / "model.keras")
        return cls(metadata, runner, "keras", version_dir, batch_size)

    @classmethod
    def _tree_from_registry(cls, metadata, version_dir, backend, intra_op_threads, batch_size, fold):
        """A tree model: ONNX Runtime on `model.onnx` (or the fold's graph), with no Keras file to fall back to."""
        if backend != "onnx":
            raise SynapseError(f"{version_dir} holds a {metadata['tree']['kind']} tree model, which runs in ONNX "
                               f"Runtime only (model.onnx). Received: backend={backend!r}; use backend='onnx'.")
        name = "model.onnx" if fold is None else f"folds/fold_{fold}.onnx"
        if not (version_dir / name).is_file():
            raise SynapseError(f"{version_dir} has no {name}" + (f" (no model for fold {fold})." if fold is not None
                                                                 else "."))
        metadata.verify_file(version_dir, name)
        try:
            runner = OnnxRunner(version_dir / name, intra_op_threads)
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"Could not load {version_dir / name}: {error}") from None
        if fold is None:
            check_probes(metadata, runner, "onnx", version_dir / name)
        return cls(metadata, runner, "onnx", version_dir, batch_size)

    @classmethod
    def _stack_from_registry(cls, metadata, version_dir, backend, intra_op_threads, batch_size, fold):
        """A stack: its members' ONNX graphs combined by the card's weights (`serving.stack_registration`)."""
        from keras_synapse.serving.stack_registration import StackRunner

        if backend != "onnx" or fold is not None:
            raise SynapseError(f"{version_dir} holds a stack, served from its members' ONNX graphs of the final refit "
                               f"only. Received: backend={backend!r}, fold={fold!r}; use backend='onnx' and no fold.")
        for name in metadata["stack"]["files"].values():
            metadata.verify_file(version_dir, name)
        try:
            runner = StackRunner(version_dir, metadata["stack"], intra_op_threads)
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"Could not load the stack's members in {version_dir}: {error}") from None
        check_probes(metadata, runner, "onnx", version_dir / "members")
        return cls(metadata, runner, "onnx", version_dir, batch_size)

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
        """A `PredictionStream` holding the last `buffer_length` bars of each symbol of `panel`.

        Raises:
            SynapseError: for a model on cross-sectional inputs, which a
                stream scoring one symbol at a time cannot compute.
        """
        if self.inputs.cross_sectional:
            raise SynapseError(
                f"{self.experiment} v{self.version} was trained on cross-sectional inputs (universe_features="
                f"{self.inputs.universe_features}, feature_cross_section={self.inputs.feature_cross_section!r}): a "
                "symbol's inputs need the whole universe's bars of each date, which a stream or the HTTP service, "
                "scoring one symbol at a time, does not have. Score it with `predict` on the universe's bars.")
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
            unless `fallback`). A model on cross-sectional inputs scores the
            whole panel instead and keeps each symbol's newest window.
        """
        if self.inputs.cross_sectional:  # the universe's bars of every date are needed: score them all
            latest = self.predict_panel(panel).reset_index("timestamp").groupby(level="symbol").tail(1)
            return latest.assign(fallback=False, reason="")
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
