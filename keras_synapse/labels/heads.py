"""Multi-task heads: each head's label, and the horizon a label may name after `@` (`forward_return@1`)."""

from keras_synapse.config import parse_pairs
from keras_synapse.errors import ConfigError


def head_labels(config):
    """The multi-task heads as dict head -> label name, and the primary head.

    A head's label may name its own horizon, `forward_return@1` (a head per
    horizon); without one it takes the config's `horizon`. The primary head
    is the one whose label is the config's `label` at the config's horizon.

    Raises:
        ConfigError: when no head uses the config's `label`, or a head's
            horizon is not a whole number >= 1.
    """
    heads = parse_pairs(config.heads, "heads")
    for head, label in heads.items():
        split_head_horizon(label, config.horizon, head)
    primary = next((head for head, label in heads.items()
                    if split_head_horizon(label, config.horizon, head) == (config.label, config.horizon)), None)
    if heads and primary is None:
        raise ConfigError(f"No head uses the primary label {config.label!r}. Received: heads={config.heads!r}")
    return heads, primary


def split_head_horizon(label, default_horizon, head="?"):
    """`"forward_return@3"` -> `("forward_return", 3)`; a label without `@` takes `default_horizon`."""
    name, at, horizon = str(label).partition("@")
    if not at:
        return name.strip(), default_horizon
    if not horizon.strip().isdigit() or int(horizon) < 1:
        raise ConfigError(f"Head {head!r}: the horizon after '@' must be a whole number of bars >= 1, e.g. "
                          f"forward_return@3. Received: {label!r}")
    return name.strip(), int(horizon)


def head_horizons(config):
    """Each head's label horizon (empty without heads)."""
    return {head: split_head_horizon(label, config.horizon, head)[1]
            for head, label in parse_pairs(config.heads, "heads").items()}
