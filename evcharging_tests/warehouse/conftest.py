"""A fresh chDB warehouse in a temporary directory per test, and a throw-away lakeFS branch that
hand-built lake rows are committed to as Spark writes them (Parquet partitioned by event_date), so
the warehouse loads real lake files through lakeFS's S3 gateway."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from evcharging.lake.main import added_event_files
from evcharging.resources.from_settings import lakefs_resource
from evcharging.resources.lakefs import LakeFSResource
from evcharging.resources.warehouse import WarehouseResource
from evcharging.warehouse.load import LoadReport, last_loaded_commit, load_lake_commit, record_load
from evcharging.warehouse.schema import ensure_tables
from evcharging_tests.warehouse.events import frame

DB = "evtest"


@pytest.fixture
def warehouse(tmp_path) -> WarehouseResource:
    return WarehouseResource(chdb_path=str(tmp_path / "chdb"), database=DB)


@dataclass
class LakeBranch:
    """A lakeFS branch off main; ``base`` is the commit it started from."""

    spark: object
    lakefs: LakeFSResource
    branch: object
    base: str

    def commit(self, rows: list[dict], message: str = "test rows") -> str:
        """Write ``rows`` (see events.py) under events/ of the branch, commit, return the commit id."""
        frame(self.spark, rows).write.mode("append").partitionBy("event_date") \
            .parquet(self.lakefs.s3a_uri(self.branch.id, "events"))
        return self.branch.commit(message=message).get_commit().id

    def added(self, commit: str, since: str | None = None) -> list[str]:
        """The event files ``commit`` added since ``since`` (default: since the branch started)."""
        return added_event_files(self.lakefs.repo(), since or self.base, commit)

    def start_warehouse_at_base(self, wh, database: str) -> None:
        """As if the warehouse had loaded main up to where the branch starts: only the test's files are new."""
        ensure_tables(wh, database)
        record_load(wh, database, LoadReport(self.base, None, 0, 0, 0, 0))

    def load(self, wh, database: str, rows: list[dict]) -> LoadReport:
        """Commit ``rows`` and load that commit (into a warehouse started at ``base`` if it is new)."""
        commit = self.commit(rows)
        ensure_tables(wh, database)
        if last_loaded_commit(wh, database) is None:
            self.start_warehouse_at_base(wh, database)
        return load_lake_commit(wh, database, self.spark, self.lakefs, commit)


@pytest.fixture
def lake(spark, stack_settings, unique_name):
    lakefs = lakefs_resource(stack_settings)
    branch = lakefs.repo().branch(f"warehouse-{unique_name}").create(source_reference=lakefs.default_branch)
    yield LakeBranch(spark, lakefs, branch, branch.get_commit().id)
    branch.delete()
