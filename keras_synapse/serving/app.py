"""An HTTP service for a registered model (FastAPI; install with `pip install -e .[serve]`).

`python -m keras_synapse.serve` runs it with uvicorn.

Endpoints (bars are lists of `{timestamp, open, high, low, close, volume}`):

- `POST /predict/pattern_confidence` `{"symbol", "bars"}`: the newest window's
  score, confidence and a recommendation;
- `POST /predict/signals` `{"symbol", "bars"}`: the score of every window;
- `POST /predict/multi_ticker` `{"bars": {"SYM": [...], ...}}`: the newest
  window of each symbol (a symbol whose data fails gets the neutral signal);
- `POST /predict/ensemble_signals` `{"symbol", "bars"}` (seed 004): each
  technical signal (`keras_synapse.evaluation.classical`) at the newest bar,
  the model's calibrated probability that each side wins
  (`win_probabilities`; a directional model's `probability_up` read for the
  side, an event model's map per strategy from the model card), and the
  signals the model's confidence keeps (`filtered_signals`, the A/B's
  meta-label filter);
- `POST /predict/multi_ticker_ensemble` `{"bars": {...}}`: the same for each
  symbol;
- `GET /health`, `GET /model` (experiment, version, label, features,
  metrics summary, ONNX parity).

Bad input gets a 4xx with a message: 422 for malformed JSON fields, for bars
that fail validation (the `validate_bars` message naming the symbol, column
and first bad timestamp), for too little history, and for missing reference
symbols. A model failure is not an error: the answer is the neutral signal
(score 0, `fallback: true`, `reason`), as for the streaming predictor.

Every answer carries the model's recorded verdict (`model.edge_significant`,
`model.verdict`), and a recommendation or filtered signal from a model
without a detectable edge comes with a `warning` saying so.

The recommendation is a display convenience, not a trading rule: scores
inside `hold_band` of zero read "hold" (directional labels: "buy" above,
"sell" below; event labels: "take" above, "skip" otherwise). Tune the band
on validation folds before acting on it.
"""

import dataclasses
import datetime
import logging

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError, DataError, SynapseError

logger = logging.getLogger("keras_synapse.serving.app")

DEFAULT_HOLD_BAND = 0.05


@dataclasses.dataclass(frozen=True)
class ServiceLimits:
    """What one request may hold; larger ones get 413 (body) or 422 (bars, symbols) before any work.

    Attributes:
        max_body_bytes: request body size (a year of 500 symbols' daily
            bars is ~25 MB of JSON). Defaults to 32 MiB.
        max_bars_per_symbol: bars per symbol (80 years of daily bars).
            Defaults to 20,000.
        max_symbols: symbols per `/predict/multi_ticker` request. Defaults to
            1,000.
    """

    max_body_bytes: int = 32 * 1024 * 1024
    max_bars_per_symbol: int = 20_000
    max_symbols: int = 1_000


# A symbol is a ticker as vendors write them (BRK.B, BTC/USD, ^VIX, ES=F): no spaces, no control characters.
SYMBOL_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9._/^=-]{0,31}$"
# Bars must be representable as nanosecond timestamps (1677-2262) and plausibly market data.
EARLIEST_BAR, LATEST_BAR = datetime.datetime(1900, 1, 1), datetime.datetime(2200, 1, 1)


def require_fastapi():
    try:
        import fastapi  # noqa: F401
        import pydantic  # noqa: F401
    except ImportError:
        raise ConfigError("The HTTP service needs FastAPI and uvicorn: pip install -e '.[serve]' "
                          "(or pip install fastapi uvicorn).") from None


def _models(limits):
    """The request models (built lazily so importing this module does not need pydantic)."""
    from typing import Annotated

    from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

    Symbol = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]

    class Bar(BaseModel):
        model_config = ConfigDict(extra="forbid")
        timestamp: datetime.datetime = Field(description="bar time; ISO 8601, naive times are taken as UTC")
        open: float
        high: float
        low: float
        close: float
        volume: float

        @field_validator("timestamp")
        @classmethod
        def plausible_time(cls, value):
            naive = value.replace(tzinfo=None) if value.tzinfo is None else (
                value.astimezone(datetime.timezone.utc).replace(tzinfo=None))
            if not EARLIEST_BAR <= naive < LATEST_BAR:
                raise ValueError(f"bar times must lie in {EARLIEST_BAR.year}-{LATEST_BAR.year - 1}. "
                                 f"Received: {value.isoformat()}")
            return value

    Bars = Annotated[list[Bar], Field(min_length=1, max_length=limits.max_bars_per_symbol,
                                      description="bars in time order")]

    class SymbolBars(BaseModel):
        model_config = ConfigDict(extra="forbid")
        symbol: Symbol = "SYMBOL"
        bars: Bars

    class MultiTickerBars(BaseModel):
        model_config = ConfigDict(extra="forbid")
        bars: Annotated[dict[Symbol, Bars], Field(min_length=1, max_length=limits.max_symbols,
                                                  description="symbol -> bars in time order")]

    return Bar, SymbolBars, MultiTickerBars


class BodySizeLimit:
    """ASGI middleware: a body over `max_bytes` gets 413, before it is read when its length is declared."""

    def __init__(self, app, max_bytes):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        # Without a declared length, read the body here, at most `max_bytes` of it, then hand it on.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(send)
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send):
        import json

        body = json.dumps({"detail": f"Request body over {self.max_bytes} bytes; send fewer bars or symbols "
                                     "per request."}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def plain_validation_errors(errors, limit=20):
    """Pydantic's validation errors as JSON-safe dicts: location, message and a short text of what was received.

    The received value is shown by `reprlib`, so a NaN (which JSON cannot
    carry) or a list of 20,000 bars (which would echo megabytes) reads as a
    short text; at most `limit` errors are listed.
    """
    import reprlib

    plain = []
    for error in errors[:limit]:
        entry = {"type": str(error.get("type")), "loc": [part if isinstance(part, int) else str(part)
                                                         for part in error.get("loc", ())],
                 "msg": str(error.get("msg"))}
        if "input" in error:
            entry["input"] = reprlib.repr(error["input"])
        plain.append(entry)
    if len(errors) > limit:
        plain.append({"type": "truncated", "loc": [], "msg": f"{len(errors) - limit} more errors not listed"})
    return plain


def bars_frame(bars):
    """Request bars -> an OHLCV frame on a UTC DatetimeIndex (naive times taken as UTC; validated later)."""
    index = pd.DatetimeIndex(pd.to_datetime([bar.timestamp for bar in bars], utc=True), name="timestamp")
    values = np.array([(bar.open, bar.high, bar.low, bar.close, bar.volume) for bar in bars], dtype=np.float64)
    return pd.DataFrame(values, index=index, columns=["open", "high", "low", "close", "volume"])


def recommend(score, task, fallback, hold_band=DEFAULT_HOLD_BAND):
    """"buy"/"sell"/"hold" for directional labels, "take"/"skip" for event labels; neutral on fallback."""
    if task.directional:
        if fallback or abs(score) <= hold_band:
            return "hold"
        return "buy" if score > 0 else "sell"
    return "take" if not fallback and score > hold_band else "skip"


def confidence_of(row, task, calibration=None):
    """The model's confidence: P(class 1) for binary, the top class probability for multiclass; for regression,
    the probability that the score's direction is right, from the card's out-of-sample calibration (else none)."""
    if task.kind == "binary":
        return float(row[f"probability_{task.classes[-1]}"])
    if task.kind == "multiclass":
        return float(max(row[f"probability_{name}"] for name in task.classes))
    probability = probability_up(float(row["score"]), calibration)
    return None if probability is None else max(probability, 1 - probability)


def probability_up(score, calibration):
    """P(up | score) from the model card's logistic calibration, or `None` without one."""
    from keras_synapse.evaluation.positions import logistic

    if not calibration:
        return None
    return float(logistic(calibration["intercept"] + calibration["slope"] * score))


def confidence_level(confidence, task):
    if confidence is None:
        return None
    chance = 1 / max(len(task.classes), 2) if task.kind != "regression" else 0.5
    edge = (confidence - chance) / (1 - chance)
    return "high" if edge >= 0.4 else "medium" if edge >= 0.15 else "low"


def _json_value(value):
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    return value


def model_verdict(predictor):
    """What the model showed on its test folds, as every answer carries it."""
    summary = predictor.metadata.get("metrics", {}).get("summary", {})
    return {"edge_significant": bool(summary.get("edge_significant", False)), "verdict": summary.get("verdict")}


NO_EDGE_WARNING = ("this model showed no detectable edge on its test folds: its recommendation is not evidence of "
                   "one; do not trade on it alone")


def _row_json(symbol, row, predictor, hold_band):
    task = predictor.task
    confidence = confidence_of(row, task, predictor.metadata.get("calibration"))
    answer = {"symbol": symbol, **{str(key): _json_value(value) for key, value in row.items()}}
    recommendation = recommend(float(row["score"]), task, bool(row["fallback"]), hold_band)
    answer.update({"confidence": confidence, "confidence_level": confidence_level(confidence, task),
                   "recommendation": recommendation})
    if recommendation not in ("hold", "skip") and not model_verdict(predictor)["edge_significant"]:
        answer["warning"] = NO_EDGE_WARNING
    return answer


def ensemble_json(symbol, bars, row, predictor):
    """Seed 004's ensemble: each technical signal at the newest bar, the model's confidence, the filtered signals.

    A technical side is kept where the model's calibrated probability that
    it wins exceeds the card's `filter_confidence` (the meta-label filter the
    run's A/B measured), and is 0 otherwise or when the model fell back. A
    directional model's probability is its P(up) read for the side; an event
    model's (seed 004's pattern confidence) comes from the card's map of the
    score to each strategy's side winning.
    """
    from keras_synapse.evaluation.classical import classical_sides

    sides = classical_sides(bars).iloc[-1]
    calibration = predictor.metadata.get("calibration") or {}
    per_strategy = calibration.get("strategies")
    fallback = bool(row["fallback"])
    score = float(row["score"])
    up = None if fallback or per_strategy is not None else probability_up(score, calibration)
    threshold = float(predictor.metadata.get("filter_confidence", 0.6))
    wins, filtered = {}, {}
    for name, side in sides.items():
        if fallback or side == 0:
            wins[name] = None
        elif per_strategy is not None:
            wins[name] = probability_up(score, per_strategy.get(name))
        else:
            wins[name] = None if up is None else (up if side > 0 else 1 - up)
        filtered[name] = float(side) if wins[name] is not None and wins[name] > threshold else 0.0
    answer = {"symbol": symbol, "timestamp": _json_value(row["timestamp"]), "score": _json_value(row["score"]),
              "fallback": fallback, "reason": row["reason"], "probability_up": up,
              "technical_signals": {name: float(side) for name, side in sides.items()},
              "win_probabilities": wins, "confidence_threshold": threshold, "filtered_signals": filtered}
    if any(filtered.values()) and not model_verdict(predictor)["edge_significant"]:
        answer["warning"] = NO_EDGE_WARNING
    return answer


def create_app(predictor, hold_band=DEFAULT_HOLD_BAND, limits=ServiceLimits()):
    """The FastAPI app serving `predictor` (a `keras_synapse.serving.inference.Predictor`).

    Args:
        predictor: the loaded model.
        hold_band: scores within this distance of 0 read "hold"/"skip".
            Defaults to `0.05`.
        limits: the `ServiceLimits` of one request. Defaults to
            `ServiceLimits()`.

    Raises:
        ConfigError: when FastAPI is not installed.
    """
    require_fastapi()
    from fastapi import FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    from keras_synapse.data.panel import Panel

    _, SymbolBars, MultiTickerBars = _models(limits)
    app = FastAPI(title="keras_synapse", description=f"Predictions of {predictor.experiment} "
                  f"v{predictor.version} ({predictor.task.label}, {predictor.task.kind})")
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request, error):
        return JSONResponse(status_code=422, content={"detail": plain_validation_errors(error.errors())})

    required = predictor.inputs.required_bars
    model_info = {"experiment": predictor.experiment, "version": predictor.version, "backend": predictor.backend,
                  **model_verdict(predictor)}

    def panel_of(frames):
        try:
            return Panel(frames)
        except DataError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None

    def require_history(symbol, count):
        if count < required:
            raise HTTPException(status_code=422, detail=(
                f"Symbol '{symbol}': {count} bars received; the model needs at least {required} (feature warm-up "
                f"{predictor.inputs.warmup} - 1 + sequence_length {predictor.inputs.sequence_length})."))

    def synapse_error(error):
        return HTTPException(status_code=422, detail=str(error))

    @app.get("/health")
    def health():
        return {"status": "ok", **model_info}

    @app.get("/model")
    def model():
        return predictor.describe()

    def latest_of(frames):
        # A fresh stream per request: the bars are validated in one vectorized
        # pass (invalid bars raise the validator's DataError -> 422) and only
        # each symbol's last buffer_length bars are featurized.
        try:
            return predictor.stream().update(frames, on_invalid="raise")
        except SynapseError as error:
            raise synapse_error(error) from None

    @app.post("/predict/pattern_confidence")
    def pattern_confidence(request: SymbolBars):
        require_history(request.symbol, len(request.bars))
        rows = latest_of({request.symbol: bars_frame(request.bars)})
        return {**_row_json(request.symbol, rows.loc[request.symbol], predictor, hold_band), "model": model_info}

    @app.post("/predict/signals")
    def signals(request: SymbolBars):
        require_history(request.symbol, len(request.bars))
        panel = panel_of({request.symbol: bars_frame(request.bars)})
        try:
            frame = predictor.predict_panel(panel)
        except SynapseError as error:
            raise synapse_error(error) from None
        windows = frame.reset_index()
        columns = [column for column in windows.columns if column != "symbol"]
        return {"symbol": request.symbol, "model": model_info, "count": len(windows),
                "signals": [{column: _json_value(value) for column, value in zip(columns, values)}
                            for values in windows[columns].itertuples(index=False, name=None)]}

    @app.post("/predict/multi_ticker")
    def multi_ticker(request: MultiTickerBars):
        rows = latest_of({symbol: bars_frame(bars) for symbol, bars in request.bars.items()})
        return {"model": model_info, "predictions": [_row_json(symbol, row, predictor, hold_band)
                                                     for symbol, row in rows.iterrows()]}

    @app.post("/predict/ensemble_signals")
    def ensemble_signals(request: SymbolBars):
        require_history(request.symbol, len(request.bars))
        frames = {request.symbol: bars_frame(request.bars)}
        rows = latest_of(frames)
        return {**ensemble_json(request.symbol, frames[request.symbol], rows.loc[request.symbol], predictor),
                "model": model_info}

    @app.post("/predict/multi_ticker_ensemble")
    def multi_ticker_ensemble(request: MultiTickerBars):
        frames = {symbol: bars_frame(bars) for symbol, bars in request.bars.items()}
        rows = latest_of(frames)
        return {"model": model_info, "predictions": [ensemble_json(symbol, frames[symbol], row, predictor)
                                                     for symbol, row in rows.iterrows()]}

    return app
