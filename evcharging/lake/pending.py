"""Ingest batches waiting to be published, from the listing of ingest branches alone.

The stream leaves each finished batch as a branch ``ingest-<stream>-<batch>`` and then tags its
commit ``ingested-<stream>-<batch>``; publishing merges and deletes the branch; a failed audit adds
a commit on top of it. So the ingest branches are exactly the batches not published yet (pending,
blocked, or still being written), and their listing stays as short as that backlog, however many
batches were published before — unlike the tags, which every batch leaves behind until the
retention prunes them. A batch is *pending* while its branch exists, its tag is known to exist
(name order is batch order, and the sensor's cursor is the newest tag it has seen) and its head
is not a failed audit. A head's metadata is read once per commit id (commits are immutable).
"""

from __future__ import annotations

from evcharging.lake.ingest import audit_failed, tag_for_branch
from evcharging.resources.lakefs import LakeFSResource
from evcharging.streaming.batches import BRANCH_PREFIX


def ingest_branches(lakefs: LakeFSResource, stream: str) -> dict[str, str]:
    """branch -> head commit id of every ingest branch of ``stream`` (all pages)."""
    list_page = lakefs.client().sdk_client.branches_api.list_branches
    refs, after = {}, ""
    while True:
        page = list_page(lakefs.repository, prefix=f"{BRANCH_PREFIX}{stream}-", after=after, amount=1000)
        refs.update({r.id: r.commit_id for r in page.results})
        if not page.pagination.has_more:
            return refs
        after = page.pagination.next_offset


_FAILED_AUDIT: dict[tuple[str, str], bool] = {}  # (repository, commit id) -> its metadata says the audit failed


def _failed_audit(lakefs: LakeFSResource, commit_id: str) -> bool:
    key = (lakefs.repository, commit_id)
    if key not in _FAILED_AUDIT:
        if len(_FAILED_AUDIT) > 10_000:  # a long-lived code server: keep the memo bounded
            _FAILED_AUDIT.clear()
        _FAILED_AUDIT[key] = audit_failed(lakefs.repo().commit(commit_id).get_commit())
    return _FAILED_AUDIT[key]


def pending_batches(lakefs: LakeFSResource, stream: str, tagged_through: str | None) -> list[str]:
    """Branches of ``stream``'s batches that are tagged up to ``tagged_through`` (a tag name: the
    newest seen), not merged and not blocked, in batch order. None: no batch is known tagged yet."""
    if not tagged_through:
        return []
    pending = [branch for branch, head in ingest_branches(lakefs, stream).items()
               if tag_for_branch(branch) <= tagged_through
               and not _failed_audit(lakefs, head)]
    return sorted(pending)
