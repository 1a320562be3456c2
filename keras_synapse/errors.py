"""Errors a user can act on.

Every error the toolkit raises for bad input derives from `SynapseError`, so the
command-line entry points can print its message and exit with status 2 instead
of showing a deep TensorFlow traceback.
"""


class SynapseError(Exception):
    """Base class for errors caused by input the user can fix."""


class DataError(SynapseError):
    """Bars that are missing, malformed or inconsistent.

    The message names the symbol, the column and the first bad timestamp
    wherever those are known.
    """


class ConfigError(SynapseError):
    """An experiment setting that is invalid or impossible to satisfy."""


class SourceUnavailableError(DataError):
    """A network source could not be reached and has no cached copy."""


class BacktestError(SynapseError, ValueError):
    """Backtest rules, or a prediction frame, that cannot be traded as given.

    Also a `ValueError`, which is what callers of `keras_synapse.evaluation.backtest`
    caught before it joined `SynapseError`.
    """


class ExportError(SynapseError):
    """The ONNX graph could not be produced or does not match the model it was made from."""


class BrokerError(SynapseError):
    """The broker refused a request, or could not be reached.

    `transient` is True for failures worth retrying later (HTTP 429, 5xx, a
    dropped connection); False for refusals that retrying will not mend
    (HTTP 401/403: keys wrong or not allowed; 422: an order the broker will
    never take).
    """

    def __init__(self, message, transient=False, status=None):
        super().__init__(message)
        self.transient = transient
        self.status = status
