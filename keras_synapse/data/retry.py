"""Retrying a flaky network call with exponential backoff.

Network sources fail in two ways worth retrying: the network itself (an
`OSError`; `requests` and `curl_cffi` errors derive from it) and a server that
answers with an error it may not repeat, such as HTTP 503 or 429. Adapters
raise `TransientError` for the second kind; anything else (an unknown symbol,
refused keys) is raised at once, since retrying cannot fix it.
"""

import logging
import time

from keras_synapse.errors import ConfigError

logger = logging.getLogger(__name__)


class TransientError(Exception):
    """A server reply worth retrying, e.g. HTTP 503 or a rate limit.

    The message says what the server answered (e.g. "HTTP 503"); it must not
    contain credentials, since it is logged.
    """


def call_with_retries(
    function,
    *,
    retries=3,
    initial_delay=1.0,
    backoff=2.0,
    retry_on=(OSError, TransientError),
    sleep=time.sleep,
    description="call",
):
    """Calls `function()`, retrying with exponential backoff on `retry_on`.

    Each retry is logged at WARNING level with `description`, the error's type
    and message, and the delay. Keep credentials out of both: neither is
    redacted.

    Args:
        function: a callable taking no arguments.
        retries: how many times to call again after the first failure, so
            `function` runs at most `retries + 1` times. Defaults to `3`.
        initial_delay: seconds to wait before the first retry. Defaults to
            `1.0`.
        backoff: the factor the delay grows by after each retry. Defaults to
            `2.0`.
        retry_on: the exception types that trigger a retry; any other
            exception propagates at once. Defaults to
            `(OSError, TransientError)`.
        sleep: the function that waits, given seconds; tests pass a recorder.
            Defaults to `time.sleep`.
        description: what is being attempted, for the log, e.g.
            "yfinance download of 'AAPL'". Defaults to `"call"`.

    Returns:
        What `function` returns.

    Raises:
        ConfigError: for a negative `retries` or `initial_delay`, or a
            `backoff` below 1.
        Exception: the last error from `function` once retries are used up.

    Example:

    >>> call_with_retries(lambda: 42, sleep=lambda seconds: None)
    42
    """
    if retries < 0:
        raise ConfigError(f"`retries` must be >= 0. Received: retries={retries}")
    if initial_delay < 0:
        raise ConfigError(f"`initial_delay` must be >= 0. Received: initial_delay={initial_delay}")
    if backoff < 1:
        raise ConfigError(f"`backoff` must be >= 1. Received: backoff={backoff}")
    delay = initial_delay
    for retry in range(1, retries + 1):
        try:
            return function()
        except retry_on as error:
            logger.warning(
                "%s failed (%s: %s); retry %d of %d in %.1f s.",
                description, type(error).__name__, error, retry, retries, delay,
            )
            sleep(delay)
            delay *= backoff
    # The last attempt is outside the loop so its error propagates unchanged.
    return function()
