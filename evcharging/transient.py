"""Which errors are transient: a service restarting, a connection refused or dropped, a timeout.

The stream waits those out (:mod:`evcharging.streaming.outage`) and Dagster steps retry them
(:mod:`evcharging.defs.retry`); any other error is a bug or bad data, and retrying it only delays
the message. An error is transient when it, or an error that caused it, is a connection or timeout
error of the clients the project uses (Python's own, urllib3 under the lakeFS SDK, pymongo,
clickhouse-connect), a server error (5xx) of lakeFS, or — for what reaches Python only as text,
through Spark's JVM or chDB — when its message says so.
"""

from __future__ import annotations

# Words of the errors a dropped or refused connection raises through Spark, the JVM's S3 and Kafka
# clients, chDB's s3() and the lakeFS SDK (urllib3). An error without any of them is not an outage.
CONNECTION_ERRORS = (
    "Connection refused", "ConnectException", "Connection reset", "connection reset", "SocketTimeout",
    "timed out", "Timed out", "TimeoutException", "NewConnectionError", "MaxRetryError", "ProtocolError",
    "RemoteDisconnected", "ServiceUnavailable", "Service Unavailable", "Bad Gateway", "Gateway Timeout",
    "NoHttpResponseException",
    "UnknownHostException", "disconnected", "Broken pipe", "EOFException", "ServerException",
    "Unable to execute HTTP request", "AWSClientIOException", "ConnectionError",
)


def first_line(text: str, fallback: str) -> str:
    """An error's first line (at most 300 characters) for a one-line message; ``fallback`` if empty."""
    return text.strip().splitlines()[0][:300] if text.strip() else fallback


def looks_like_connection_error(text: str) -> bool:
    return any(marker in text for marker in CONNECTION_ERRORS)


def _transient_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from urllib3.exceptions import HTTPError as Urllib3Error  # NewConnectionError, MaxRetryError, timeouts …

        types.append(Urllib3Error)
    except ImportError:
        pass
    try:
        from pymongo.errors import ConnectionFailure  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError

        types.append(ConnectionFailure)
    except ImportError:
        pass
    try:
        from clickhouse_connect.driver.exceptions import OperationalError

        types.append(OperationalError)
    except ImportError:
        pass
    return tuple(types)


def _server_error(exc: BaseException) -> bool:
    """A 5xx answer of lakeFS (its SDK's exceptions carry the status)."""
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    return isinstance(status, int) and 500 <= status < 600 and type(exc).__module__.split(".")[0] in (
        "lakefs", "lakefs_sdk")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` or any error in its chain (cause, context) is transient (see the module docstring)."""
    types, seen = _transient_types(), set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, types) or _server_error(exc) or looks_like_connection_error(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
