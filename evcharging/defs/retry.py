"""The retry policy of steps that talk to lakeFS, FerretDB/MongoDB or ClickHouse.

A restart or a dropped connection of one of them is waited out: three more attempts, 5, 10 and
20 s apart (± jitter). A failed blocking check (Dagster's own error) and a ``dg.Failure`` with
``allow_retries=False`` are not retried: they are no transient fault.
"""

import dagster as dg

TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
