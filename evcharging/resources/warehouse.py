"""ClickHouse, the warehouse: one client, clickhouse-connect, on a server or on embedded chDB.

``clickhouse_url`` set → that server over HTTP; unset → chDB at ``chdb_path``, through the chDB
backend that chdb registers with clickhouse-connect (``get_client(dsn="chdb:///path")``). The same
client methods and the same SQL serve both, so there is one code path; what differs is below.

chDB holds an exclusive lock on its directory for as long as a client is open, so every use goes
through ``with warehouse.connect() as wh:`` and closes it at the end of the step; Dagster serialises
the steps that open it with the ``warehouse`` pool (limit 1). Another process (`evcharging sql`, a
step of another run) may hold it for a moment: opening waits for the lock — saying so once — rather
than fail, for up to ``lock_wait_seconds``.

chDB merges a table's parts only inside the process that has it open, and a step holds it for a
second or two: a merge still under way when the client closes is cancelled and starts over in the
next process, so parts pile up and every step pays for merges that never finish. Closing a chDB
client therefore first lets the merges under way finish, for up to ``merge_wait_seconds``, and the
event tables cap the size of one merge (``schema.CHDB_MAX_MERGE_BYTES``) so that a merge fits in
that wait. A ClickHouse server merges in its own background and needs neither.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
from pydantic import Field

# Arrow results with plain value types from either backend (Spark's createDataFrame wants them).
_ARROW_SETTINGS = {"output_format_arrow_low_cardinality_as_dictionary": 0}


class WarehouseConnection:
    """One open clickhouse-connect client; ``query_df`` / ``query_arrow`` / ``command`` /
    ``insert_arrow`` on either backend."""

    def __init__(self, client, backend: str, lakefs_endpoint: str | None = None, merge_wait_seconds: float = 0.0):
        self.client, self.backend = client, backend  # backend: "chdb" or "clickhouse-server"
        self.lakefs_endpoint = lakefs_endpoint  # lakeFS as this backend reaches it; None = the lakeFS resource's
        self.merge_wait_seconds = merge_wait_seconds

    def command(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL, INSERT … SELECT)."""
        self.client.command(sql)

    def query_df(self, sql: str):
        """Run a query, return a pandas DataFrame."""
        return self.client.query_df(sql)

    def query_rows(self, sql: str) -> list[tuple]:
        return self.client.query(sql).result_rows

    def query_arrow(self, sql: str):
        """Run a query, return a pyarrow Table with the same types from either backend: String as
        ``string``, LowCardinality as its plain value type, Nullable as a nullable field,
        DateTime64(3, 'UTC') as ``timestamp[ms, tz=UTC]`` (what Spark's ``createDataFrame`` takes)."""
        return _without_dictionaries(self.client.query_arrow(sql, use_strings=True, settings=_ARROW_SETTINGS))

    def insert_arrow(self, table: str, arrow_table) -> None:
        """Append a pyarrow Table whose columns match ``table``'s by name."""
        self.client.insert_arrow(table, arrow_table)

    def close(self) -> None:
        try:
            if self.backend == "chdb":
                self.finish_merges(self.merge_wait_seconds)
        finally:  # a client a failed statement left unusable is closed all the same
            self.client.close()

    def finish_merges(self, seconds: float) -> None:
        """chDB: wait until no merge is under way, for at most ``seconds`` (see the module docstring)."""
        started = time.monotonic()
        while (self.backend == "chdb" and time.monotonic() - started < seconds
               and self.client.command("SELECT count() FROM system.merges")):
            time.sleep(0.1)


def _without_dictionaries(table):
    """Decode dictionary-encoded columns (a server may send LowCardinality so): Spark wants plain types."""
    import pyarrow as pa

    if not any(pa.types.is_dictionary(f.type) for f in table.schema):
        return table
    fields = [pa.field(f.name, f.type.value_type, f.nullable) if pa.types.is_dictionary(f.type) else f
              for f in table.schema]
    return table.cast(pa.schema(fields))


class WarehouseBusyError(RuntimeError):
    """chDB's directory stayed locked by another process for longer than the caller would wait."""


class WarehouseResource(dg.ConfigurableResource):
    """The ClickHouse warehouse. ``clickhouse_url`` set → that server; unset → chDB at ``chdb_path``."""

    clickhouse_url: str | None = Field(None, json_schema_extra={"dagster__is_secret": True})
    chdb_path: str = ".evcharging/chdb"
    database: str = "evcharging"
    lakefs_endpoint: str | None = Field(
        None, description="lakeFS's S3 gateway as the warehouse reaches it, when not at the lakeFS resource's endpoint.")

    lock_wait_seconds: float = Field(
        900, description="How long opening chDB waits for another process to release its directory lock.")
    merge_wait_seconds: float = Field(
        5, description="chDB: how long closing a session waits for the merges under way to finish "
                       "(they are cancelled when it closes, and would start over in the next process).")

    @contextmanager
    def connect(self, on_wait: Callable[[str], None] | None = None,
                wait_seconds: float | None = None) -> Iterator[WarehouseConnection]:
        """An open connection, closed on leaving. ``on_wait`` is told once if chDB's lock is held;
        opening gives up with :class:`WarehouseBusyError` after ``wait_seconds`` (default
        ``lock_wait_seconds``)."""
        conn = self._open(on_wait, self.lock_wait_seconds if wait_seconds is None else wait_seconds)
        try:
            conn.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            yield conn
        finally:
            conn.close()

    def _open(self, on_wait: Callable[[str], None] | None, wait_seconds: float) -> WarehouseConnection:
        import clickhouse_connect

        if self.clickhouse_url:
            url = urlparse(self.clickhouse_url)
            client = clickhouse_connect.get_client(
                host=url.hostname, port=url.port or 8123, username=url.username or "default",
                password=url.password or "", secure=url.scheme == "https")
            return WarehouseConnection(client, "clickhouse-server", lakefs_endpoint=self.lakefs_endpoint)
        path = Path(self.chdb_path).resolve()
        path.mkdir(parents=True, exist_ok=True)
        deadline, told = time.monotonic() + wait_seconds, False
        while True:
            if not chdb_locked(path):
                try:
                    return WarehouseConnection(clickhouse_connect.get_client(dsn=f"chdb://{path}"), "chdb",
                                               merge_wait_seconds=self.merge_wait_seconds)
                except Exception as exc:  # chDB raises a bare error, also when it lost a race for the lock
                    if not chdb_locked(path):
                        raise RuntimeError(f"warehouse: cannot open chDB at {path}: {exc}") from exc
            if time.monotonic() > deadline:
                raise WarehouseBusyError(
                    f"warehouse: chDB at {path} stayed locked by another process for {wait_seconds:.0f} s "
                    "(only one process may open a chDB directory at a time: a Dagster step or `evcharging sql`)")
            if on_wait and not told:
                on_wait(f"the warehouse (chDB at {path}) is in use by another process, e.g. a running load: "
                        f"waiting for it (up to {wait_seconds:.0f} s)")
                told = True
            time.sleep(0.2)


def chdb_locked(path: Path) -> bool:
    """Whether another open chDB session holds ``path`` (ClickHouse ``flock``s ``<path>/status``)."""
    try:
        with open(path / "status", "rb") as status:
            try:
                fcntl.flock(status, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(status, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False
