"""Ingest batches on lakeFS as the write-audit-publish steps see them (plain Python, no Dagster).

The stream marks a finished batch with the tag ``ingested-<stream>-<batch>`` on the commit of branch
``ingest-<stream>-<batch>`` (see ``evcharging.streaming.batches``). A batch is *merged* once that
commit is an ancestor of main; only ``publish`` makes it so, after the audit passed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from evcharging.contracts import LAKE_EVENTS_PATH
from evcharging.crashpoints import crashpoint
from evcharging.resources.lakefs import LakeFSResource
from evcharging.streaming.batches import BRANCH_PREFIX, META, TAG_PREFIX

AUDIT = "evcharging.audit."  # prefix of the audit's commit-metadata keys


@dataclass(frozen=True)
class IngestCommit:
    """A batch the stream finished: its branch (= Dagster partition key), tag and commit."""

    branch: str
    tag: str
    commit_id: str
    metadata: dict

    @property
    def valid_rows(self) -> int:
        return int(self.metadata.get(f"{META}valid_rows", 0))

    @property
    def quarantined_rows(self) -> int:
        return int(self.metadata.get(f"{META}quarantined_rows", 0))

    @property
    def event_dates(self) -> list[str]:
        return json.loads(self.metadata.get(f"{META}event_dates", "[]"))


@dataclass(frozen=True)
class Unpublished:
    """The ingest batches the stream finished that are not on main yet (blocked, or waiting)."""

    count: int
    oldest_branch: str | None = None
    oldest_age_s: float | None = None  # since the stream committed it


def unpublished_batches(lakefs: LakeFSResource, stream: str) -> Unpublished:
    """Tagged ingest batches of ``stream`` whose branch still exists and is not merged (a merged
    branch is deleted right after its merge; one left by a crash in between does not count; a
    branch without its tag is still being written). Costs a few calls per unpublished batch."""
    from datetime import UTC, datetime

    from lakefs.exceptions import NotFoundException

    repo = lakefs.repo()
    waiting = []
    for branch in repo.branches(prefix=f"{BRANCH_PREFIX}{stream}-"):
        try:
            commit = repo.tag(tag_for_branch(branch.id)).get_commit()
        except NotFoundException:
            continue
        if not is_merged(lakefs, commit.id):
            waiting.append((branch.id, commit))
    if not waiting:
        return Unpublished(0)
    branch, commit = waiting[0]  # names are zero-padded: the first is the oldest batch
    return Unpublished(len(waiting), branch, round(datetime.now(UTC).timestamp() - commit.creation_date, 1))


def branch_for_tag(tag: str) -> str:
    return BRANCH_PREFIX + tag.removeprefix(TAG_PREFIX)


def tag_for_branch(branch: str) -> str:
    return TAG_PREFIX + branch.removeprefix(BRANCH_PREFIX)


def unseen_ingest_tags(lakefs: LakeFSResource, stream: str, after: str | None, limit: int = 500) -> list[str]:
    """Ingest tags of ``stream`` strictly after ``after``, in batch order (names are zero-padded)."""
    tags = lakefs.repo().tags(prefix=f"{TAG_PREFIX}{stream}-", after=after or None, max_amount=limit)
    return [t.id for t in tags]


def ingest_commit(lakefs: LakeFSResource, branch: str) -> IngestCommit:
    tag = tag_for_branch(branch)
    commit = lakefs.repo().tag(tag).get_commit()
    return IngestCommit(branch, tag, commit.id, dict(commit.metadata or {}))


def is_ancestor(lakefs: LakeFSResource, commit_id: str, ref: str) -> bool:
    """Whether ``commit_id`` is already part of ``ref``'s history (it is its own merge base with it)."""
    sdk = lakefs.client().sdk_client
    return sdk.refs_api.find_merge_base(lakefs.repository, commit_id, ref).base_commit_id == commit_id


def is_merged(lakefs: LakeFSResource, commit_id: str) -> bool:
    """Whether ``commit_id`` is already part of main."""
    return is_ancestor(lakefs, commit_id, lakefs.default_branch)


def arrow_filesystem(lakefs: LakeFSResource):
    """pyarrow's S3 filesystem on lakeFS's S3 gateway: paths ``<repo>/<ref>/<path>``."""
    from urllib.parse import urlparse

    import pyarrow.fs as pafs

    url = urlparse(lakefs.endpoint)
    return pafs.S3FileSystem(access_key=lakefs.access_key_id, secret_key=lakefs.secret_access_key,
                             endpoint_override=url.netloc, scheme=url.scheme, region="us-east-1")


def batch_event_files(lakefs: LakeFSResource, commit: IngestCommit) -> list[str]:
    """The Parquet files this batch added (its commit against its parent, not against today's main)."""
    repo = lakefs.repo()
    parent = repo.commit(commit.commit_id).get_commit().parents[0]
    return [c.path for c in repo.ref(parent).diff(other_ref=commit.commit_id, prefix=f"{LAKE_EVENTS_PATH}/")
            if c.type == "added" and c.path.endswith(".parquet")]


def read_events(lakefs: LakeFSResource, ref: str, paths: list[str], columns: list[str] | None = None) -> pd.DataFrame:
    """The given lake files at ``ref`` as one DataFrame (event_date restored from the path)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs = arrow_filesystem(lakefs)
    tables = []
    for path in paths:
        table = pq.read_table(f"{lakefs.repository}/{ref}/{path}", filesystem=fs, columns=columns)
        date = next((p.split("=", 1)[1] for p in path.split("/") if p.startswith("event_date=")), None)
        if columns is None or "event_date" in columns:
            table = table.append_column("event_date", pa.array([date] * table.num_rows, pa.string()))
        tables.append(table)
    if not tables:
        return pd.DataFrame(columns=columns or [])
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def event_ids_on_main(lakefs: LakeFSResource, event_dates: list[str]) -> set[str]:
    """Every event id on main for the given event dates: reads all of main's files of those dates.

    Its cost grows with main, so the audit uses :func:`evcharging.lake.main_ids.batch_ids_on_main`;
    this stays for tests and as the benchmark's baseline (``bench/bench_audit.py``).
    """
    repo = lakefs.repo()
    ids: set[str] = set()
    for date in event_dates:
        prefix = f"{LAKE_EVENTS_PATH}/event_date={date}/"
        paths = [o.path for o in repo.ref(lakefs.default_branch).objects(prefix=prefix) if o.path.endswith(".parquet")]
        if paths:
            ids |= set(read_events(lakefs, lakefs.default_branch, paths, columns=["event_id"])["event_id"])
    return ids


def publish(lakefs: LakeFSResource, commit: IngestCommit, metadata: dict[str, str], note: str = "") -> str:
    """Merge the batch's branch into main with ``metadata`` (and ``note`` in the message), then delete
    the branch. Returns the merge commit."""
    repo = lakefs.repo()
    branch = repo.branch(commit.branch)
    # allow_empty: a batch of nothing but copies of main's events is published too (and so counted as done)
    crashpoint("before_merge")
    merge_commit = branch.merge_into(repo.branch(lakefs.default_branch), allow_empty=True,
                                     message=f"publish {commit.branch} {note}".strip(), metadata=metadata)
    crashpoint("after_merge")
    branch.delete()
    return merge_commit


def drop_branch(lakefs: LakeFSResource, branch: str) -> None:
    """Delete ``branch`` if it still exists (a batch's branch once its commit is on main)."""
    from lakefs.exceptions import NotFoundException

    try:
        lakefs.repo().branch(branch).delete()
    except NotFoundException:
        pass


def audit_failed(commit) -> bool:
    """Whether ``commit`` (a branch's head) records a failed audit."""
    return (commit.metadata or {}).get(f"{AUDIT}status") == "failed"


def record_failed_audit(lakefs: LakeFSResource, commit: IngestCommit, failures: dict[str, str]) -> None:
    """Keep the branch, and write why it was not merged into its history (an empty commit)."""
    branch = lakefs.repo().branch(commit.branch)
    metadata = {f"{AUDIT}status": "failed", **{f"{AUDIT}{name}": reason[:1000] for name, reason in failures.items()}}
    if dict(branch.get_commit().metadata or {}) != metadata:  # re-running a failed audit adds nothing
        branch.commit(message=f"audit failed: {', '.join(failures)}", metadata=metadata, allow_empty=True)
