"""Transient errors (a service restarting, a connection refused or dropped) are told from the rest,
and a Dagster step retries only those: any other error fails it at once, with its message."""

import dagster as dg
import pytest
from lakefs.exceptions import NotFoundException, ServerException
from pymongo.errors import ServerSelectionTimeoutError

from evcharging.defs.retry import transient_only
from evcharging.transient import is_transient, looks_like_connection_error


@pytest.mark.parametrize("text, transient", [
    ("py4j.protocol.Py4JJavaError: java.net.ConnectException: Connection refused", True),
    ("urllib3.exceptions.MaxRetryError: HTTPConnectionPool(host='127.0.0.1', port=8000)", True),
    ("BatchConflictError: batch 3 is already in lakeFS with Kafka offsets", False),
    ("AnalysisException: cannot resolve column", False),
])
def test_connection_errors_are_told_from_other_errors(text, transient):
    assert looks_like_connection_error(text) is transient


def _raised_from(cause: BaseException, exc: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise exc from inner
    except BaseException as outer:
        return outer


@pytest.mark.parametrize("exc, transient", [
    (ConnectionRefusedError(111, "refused"), True),
    (TimeoutError("read"), True),
    (ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111]"), True),  # FerretDB/MongoDB down
    (ServerException(status=503, reason="Service Unavailable"), True),  # lakeFS while MinIO restarts
    (NotFoundException(status=404, reason="Not Found"), False),
    (ValueError("column event_time has no type"), False),
    (KeyError("lakefs_commit"), False),
    (_raised_from(ConnectionResetError(104, "reset"), RuntimeError("loading failed")), True),  # through a wrapper
    (RuntimeError("Code: 1000. DB::Exception: Poco::Exception. Code: 1000, e.code() = 111, Connection refused"), True),
])
def test_transient_errors_are_connection_timeout_and_server_errors_in_the_chain(exc, transient):
    assert is_transient(exc) is transient


def _flaky_asset(error: Exception, failures: int):
    attempts = []

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2, delay=0))
    @transient_only
    def flaky(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """A step that fails ``failures`` times with ``error``."""
        attempts.append(context.retry_number)
        if len(attempts) <= failures:
            raise error
        return dg.MaterializeResult()

    return flaky, attempts


def test_a_step_retries_a_connection_error_and_then_succeeds():
    flaky, attempts = _flaky_asset(ConnectionRefusedError(111, "Connection refused"), failures=1)
    assert dg.materialize([flaky]).success
    assert attempts == [0, 1]
    assert flaky.op.description == "A step that fails ``failures`` times with ``error``."


def test_a_step_fails_at_once_on_any_other_error_with_its_message():
    flaky, attempts = _flaky_asset(ValueError("event_time is not a timestamp"), failures=1)
    result = dg.materialize([flaky], raise_on_error=False)
    assert not result.success and attempts == [0]
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "ValueError: event_time is not a timestamp" in failure.step_failure_data.error.message


def test_a_generator_step_stays_one_and_fails_at_once_on_any_other_error():
    attempts = []

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2, delay=0), output_required=False)
    @transient_only
    def optional(context: dg.AssetExecutionContext):
        attempts.append(context.retry_number)
        if len(attempts) == 1:
            raise ConnectionResetError(104, "Connection reset by peer")
        if len(attempts) == 2:
            yield dg.MaterializeResult()
            return
        raise KeyError("lakefs_commit")

    assert dg.materialize([optional]).success and attempts == [0, 1]
    result = dg.materialize([optional], raise_on_error=False)
    assert not result.success and attempts == [0, 1, 0]
