"""Labels: targets with the time at which each becomes known.

A label at bar t looks forward (bars t+1 .. t+horizon), so it is known only at
its end time. Validation purges on that end time, which is why every label
returns it. Most labels end at t+horizon; triple-barrier and meta-labels end at
the bar where the first barrier is touched, which may be earlier.

Every threshold a label uses is known at t: trailing volatility over the bars up
to t, and pattern-detection percentiles over the signal's own history up to t
(an expanding quantile), never over the whole series, which would let bars
after t move the threshold and so the label at t.

The registry `LABELS` maps a name to a function
`label(bars, horizon=5, scaling="volatility", **options) -> Label`:

| name | kind | values |
|---|---|---|
| `forward_return` | regression | h-bar forward log return, optionally / (sigma_t sqrt(h)) |
| `direction` | multiclass | DOWN=0, FLAT=1, UP=2 |
| `direction_binary` | binary | DOWN=0, UP=1 |
| `momentum_persistence` | binary | faded=0, persisted=1 |
| `volatility_regime_shift` | binary | subsided=0, persisted=1 |
| `trend_exhaustion` | binary | continued=0, reversed=1 |
| `volume_divergence` | binary | unresolved=0, resolved=1 |
| `triple_barrier` | multiclass | STOP_LOSS=0, VERTICAL=1, PROFIT_TAKE=2 (or binary DOWN=0, UP=1) |
| `meta_label` | binary | UNPROFITABLE=0, PROFITABLE=1 |

Class labels are class indices (0 .. num_classes - 1), ready for a sparse
categorical or binary cross-entropy; `Label.classes[i]` names index i.

Example:

>>> from keras_synapse.data.sample import load_sample
>>> labels = compute_labels(load_sample(quick=True), "triple_barrier", horizon=5)
>>> labels["SP500"].classes
('STOP_LOSS', 'VERTICAL', 'PROFIT_TAKE')
"""

import inspect

from keras_synapse.errors import ConfigError
from keras_synapse.labels.barriers import meta_label, triple_barrier_label
from keras_synapse.labels.common import with_execution_lag
from keras_synapse.labels.patterns import (
    momentum_persistence_label,
    trend_exhaustion_label,
    volatility_regime_shift_label,
    volume_divergence_label,
)
from keras_synapse.labels.returns import (
    direction_binary_label,
    direction_label,
    forward_return_label,
    forward_volatility_label,
)

LABELS = {
    "forward_return": forward_return_label,
    "forward_volatility": forward_volatility_label,
    "direction": direction_label,
    "direction_binary": direction_binary_label,
    "momentum_persistence": momentum_persistence_label,
    "volatility_regime_shift": volatility_regime_shift_label,
    "trend_exhaustion": trend_exhaustion_label,
    "volume_divergence": volume_divergence_label,
    "triple_barrier": triple_barrier_label,
    "meta_label": meta_label,
}


_COMMON_ARGUMENTS = ("bars", "horizon", "scaling", "execution_lag")


def label_options(name):
    """The options of label `name` beyond `horizon` and `scaling`, with their defaults.

    Args:
        name: a key of `LABELS`.

    Returns:
        A dict option name -> default value.

    Raises:
        ConfigError: for an unknown label name, listing the known ones.
    """
    if name not in LABELS:
        raise ConfigError(f"Unknown label {name!r}. Known: {', '.join(LABELS)}")
    parameters = inspect.signature(LABELS[name]).parameters
    return {key: parameter.default for key, parameter in parameters.items() if key not in _COMMON_ARGUMENTS}


def compute_labels(panel, name="forward_return", horizon=5, scaling="volatility", execution_lag=0, **options):
    """Computes label `name` for every symbol of `panel`.

    Args:
        panel: a `Panel` (or any mapping symbol -> canonical OHLCV bars).
        name: a key of `LABELS`. Defaults to `"forward_return"`.
        horizon: bars ahead. Defaults to `5`.
        scaling: `"none"` or `"volatility"` (only `forward_return` uses it).
            Defaults to `"volatility"`.
        execution_lag: bars from the signal to the trade (see
            `with_execution_lag`). Defaults to `0`.
        **options: the label's own options, see `label_options(name)`.

    Returns:
        A dict symbol -> `Label`.

    Raises:
        ConfigError: for an unknown label name, an option the label does not
            have, or a bad option value.
    """
    known_options = label_options(name)
    unknown = [option for option in options if option not in known_options]
    if unknown:
        received = ", ".join(f"{option}={options[option]!r}" for option in unknown)
        raise ConfigError(
            f"Label {name!r} has no option(s) {unknown}. Known options: "
            f"{', '.join(known_options) or 'none'}. Received: {received}"
        )
    function = LABELS[name]

    def label_of(bars):
        if "execution_lag" in inspect.signature(function).parameters:  # the label prices its own entry
            return function(bars, horizon=horizon, scaling=scaling, execution_lag=execution_lag, **options)
        return with_execution_lag(function(bars, horizon=horizon, scaling=scaling, **options), execution_lag, bars,
                                  horizon)

    return {symbol: label_of(bars) for symbol, bars in panel.items()}
