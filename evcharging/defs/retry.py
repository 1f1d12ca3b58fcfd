"""The retry policy of steps that talk to lakeFS, FerretDB/MongoDB or ClickHouse.

A restart or a dropped connection of one of them is waited out: three more attempts, 5, 10 and
20 s apart (± jitter). Only such transient errors (:func:`evcharging.transient.is_transient`) are
retried: a step wrapped in :func:`transient_only` turns any other error into a ``dg.Failure``
without retries (caused by the original error), so a bug or bad data fails at once with its
message. A failed blocking check (Dagster's own error) is no exception of the step and is not
retried either.
"""

import functools
import inspect

import dagster as dg

from evcharging.transient import is_transient

TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def _no_retry_unless_transient(exc: Exception) -> Exception:
    """What the step raises for ``exc``: itself if it may be retried, else a Failure without retries."""
    if isinstance(exc, (dg.Failure, dg.RetryRequested)) or is_transient(exc):
        return exc
    failure = dg.Failure(f"{type(exc).__name__}: {exc}"[:4000], allow_retries=False)
    failure.__cause__ = exc  # shown with the failure, as `raise … from exc` would
    return failure


def transient_only(step):
    """Decorate an asset's function (under ``@dg.asset(retry_policy=TRANSIENT_RETRY)``) so that only
    transient errors reach the retry policy. A generator function stays one (Dagster tells them apart)."""
    if inspect.isgeneratorfunction(step):
        @functools.wraps(step)
        def run_generator(*args, **kwargs):
            try:
                yield from step(*args, **kwargs)
            except Exception as exc:
                raise _no_retry_unless_transient(exc)

        return run_generator

    @functools.wraps(step)
    def run(*args, **kwargs):
        try:
            return step(*args, **kwargs)
        except Exception as exc:
            raise _no_retry_unless_transient(exc)

    return run
