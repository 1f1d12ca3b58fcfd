"""What main holds and what a commit added to it, read from Parquet footers (no data scan)."""

from __future__ import annotations

from dataclasses import dataclass

from evcharging.contracts import LAKE_EVENTS_PATH
from evcharging.lake.ingest import arrow_filesystem
from evcharging.resources.lakefs import LakeFSResource


class LakeHistoryError(RuntimeError):
    """lakeFS ``main`` no longer contains what was read from it before (its history was rewritten)."""


@dataclass(frozen=True)
class MainSnapshot:
    commit_id: str
    files_added: int
    rows_added: int


def added_event_files(repo, previous: str | None, commit: str, prefix: str = LAKE_EVENTS_PATH) -> list[str]:
    """Paths of the event Parquet files ``commit`` has and ``previous`` has not (all, when None)."""
    if previous is None:
        paths = [o.path for o in repo.ref(commit).objects(prefix=f"{prefix}/")]
    else:
        changes = list(repo.ref(previous).diff(other_ref=commit, prefix=f"{prefix}/"))
        rewritten = [c for c in changes if c.type != "added"]
        if rewritten:
            sample = ", ".join(f"{c.type} {c.path}" for c in rewritten[:3])
            raise LakeHistoryError(
                f"lakeFS: from the last loaded commit {previous[:12]} to {commit[:12]}, {len(rewritten)} event "
                f"files were not just added ({sample}); the lake is append-only, so main's history was "
                "rewritten. Reload the warehouse in full (config full_reload=true) after checking main.")
        paths = [c.path for c in changes]
    return sorted(p for p in paths if p.endswith(".parquet"))


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
    files = added_event_files(lakefs.repo(), since, head) if since != head else []
    return MainSnapshot(head, len(files), parquet_rows(lakefs, head, files))
