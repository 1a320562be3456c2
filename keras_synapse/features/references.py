"""Reference series: the market, sector and volatility indexes cross-asset features read.

A reference is an input, not a traded symbol: the run that reads it to build
a feature neither trains on its windows nor scores or trades it
(`split_reference_inputs`), since a VIX series is not something the model
should learn to forecast beside the stocks, and scoring it would mix an
index's fit into the stocks' IC.

The roles (`REFERENCE_ROLES`) map to symbols of the data, from the
experiment's `market_symbol`, `sector_symbol`, `vix_symbol` and
`vix3m_symbol`. The sector may differ per symbol: `sector_symbol` is one
symbol for every stock (`"XLK"`) or `"SYMBOL=SECTOR;..."` pairs
(`"AAPL=XLK;JPM=XLF"`), where a pair `*=SECTOR` is the default of symbols
the pairs do not name.

Example:

```python
roles = {"market": "SPY", "sector": "AAPL=XLK;JPM=XLF", "vix": "^VIX", "vix3m": "^VIX3M"}
symbol_roles(roles, "JPM")  # {"market": "SPY", "sector": "XLF", "vix": "^VIX", "vix3m": "^VIX3M"}
```
"""

from keras_synapse.errors import ConfigError

# Roles a cross-asset feature can ask for, and what to give it.
REFERENCE_ROLES = {
    "market": "a broad market index (e.g. MARKET in `--data sample:references`, SPY from yfinance)",
    "sector": "the symbol's sector index or ETF (e.g. XLK), one for all or SYMBOL=SECTOR pairs",
    "vix": "the CBOE VIX index (e.g. ^VIX from yfinance)",
    "vix3m": "the CBOE 3-month VIX index (e.g. ^VIX3M from yfinance)",
}


def sector_map(text):
    """Parses `sector_symbol`: `"XLK"` or `"AAPL=XLK;JPM=XLF;*=SPY"` -> `(default, {symbol: sector})`.

    Raises:
        ConfigError: for a pair without a symbol or a sector, or a symbol named twice.
    """
    text = str(text or "").strip()
    if "=" not in text:
        return text, {}
    default, sectors = "", {}
    for pair in filter(None, (part.strip() for part in text.split(";"))):
        symbol, _, sector = (part.strip() for part in pair.partition("="))
        if not symbol or not sector:
            raise ConfigError(f"`sector_symbol` pairs are SYMBOL=SECTOR separated by ';'. Received: {pair!r} in "
                              f"{text!r}")
        if symbol == "*":
            default = sector
        elif symbol in sectors:
            raise ConfigError(f"`sector_symbol` names {symbol!r} twice. Received: {text!r}")
        else:
            sectors[symbol] = sector
    return default, sectors


def symbol_roles(reference_symbols, symbol=None):
    """The reference symbol of each role for one symbol: its own sector where `sector_symbol` has pairs.

    Args:
        reference_symbols: dict role -> symbol (the sector may be pairs, see
            the module docstring); empty roles are unset.
        symbol: the symbol whose features are computed. Defaults to `None`
            (the sector default only).

    Returns:
        A dict role -> symbol, without unset roles.
    """
    roles = dict(reference_symbols or {})
    if "sector" in roles:
        default, sectors = sector_map(roles["sector"])
        roles["sector"] = sectors.get(symbol, default)
    return {role: name for role, name in roles.items() if name}


def reference_inputs(roles_needed, reference_symbols, symbols):
    """The symbols that serve as reference inputs of `symbols` for the roles a feature set needs.

    Args:
        roles_needed: the roles of the run's feature sets (`FeatureSet.references`).
        reference_symbols: dict role -> symbol, as for `symbol_roles`.
        symbols: the symbols of the data.

    Returns:
        A tuple of the reference symbols present in `symbols`, in data order.
    """
    if not roles_needed:
        return ()
    used = {name for symbol in symbols for role, name in symbol_roles(reference_symbols, symbol).items()
            if role in roles_needed}
    return tuple(symbol for symbol in symbols if symbol in used)


def resolve_references(feature_set, sources, reference_symbols, symbol=None):
    """Maps each reference role the feature set needs to that series' bars, for one symbol.

    Args:
        feature_set: a `FeatureSet`.
        sources: a `Panel` or dict symbol -> canonical bars holding the
            reference series.
        reference_symbols: dict role -> symbol (see `symbol_roles`).
        symbol: the symbol the features are for (picks its sector). Defaults
            to `None`.

    Returns:
        A dict role -> canonical bars.

    Raises:
        ConfigError: naming each missing series, what it is, and how to
            supply it. Missing references are never zero-filled.
    """
    roles = symbol_roles(reference_symbols, symbol)
    missing, references = [], {}
    for role in feature_set.references:
        name = roles.get(role, "")
        if name and name in sources:
            references[role] = sources[name]
        else:
            missing.append((role, name))
    if missing:
        lines = [
            f"  '{role}' ({REFERENCE_ROLES[role]}): "
            + (f"symbol '{name}' is not in the data" if name else "no symbol set")
            + f"; add it to --data and pass --set {role}_symbol=SYMBOL"
            for role, name in missing
        ]
        where = f" for symbol '{symbol}'" if symbol is not None else ""
        raise ConfigError(
            f"Feature set '{feature_set.name}' needs reference series that are missing{where}:\n"
            + "\n".join(lines)
            + "\nOr choose a feature set without cross-asset features (e.g. pattern14 instead of pattern17), or "
            "--data sample:references for the offline sample with its reference series."
        )
    return references
