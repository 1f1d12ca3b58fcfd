"""What main holds and what a commit added to it, read from Parquet footers (no data scan)."""

from __future__ import annotations

from dataclasses import dataclass

from evcharging.contracts import LAKE_EVENTS_PATH
from evcharging.lake.ingest import arrow_filesystem
from evcharging.resources.lakefs import LakeFSResource


@dataclass(frozen=True)
class MainSnapshot:
    commit_id: str
    files_added: int
    rows_added: int


def added_event_files(lakefs: LakeFSResource, old: str | None, new: str) -> list[str]:
    """Event files present at ``new`` but not at ``old`` (all of them when ``old`` is None)."""
    repo = lakefs.repo()
    if old is None:
        return [o.path for o in repo.ref(new).objects(prefix=f"{LAKE_EVENTS_PATH}/") if o.path.endswith(".parquet")]
    return [c.path for c in repo.ref(old).diff(other_ref=new, prefix=f"{LAKE_EVENTS_PATH}/")
            if c.type == "added" and c.path.endswith(".parquet")]


def parquet_rows(lakefs: LakeFSResource, ref: str, paths: list[str]) -> int:
    import pyarrow.parquet as pq

    fs = arrow_filesystem(lakefs)
    total = 0
    for path in paths:
        with fs.open_input_file(f"{lakefs.repository}/{ref}/{path}") as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def main_snapshot(lakefs: LakeFSResource, since: str | None) -> MainSnapshot:
    head = lakefs.repo().branch(lakefs.default_branch).get_commit().id
    files = added_event_files(lakefs, since, head) if since != head else []
    return MainSnapshot(head, len(files), parquet_rows(lakefs, head, files))
