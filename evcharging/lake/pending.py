"""Ingest batches waiting to be published, from two listings (no per-batch call).

The stream leaves each finished batch as a branch ``ingest-<stream>-<batch>`` whose head is the
commit its tag ``ingested-<stream>-<batch>`` points to. Publishing deletes the branch; a failed
audit adds a commit on top of it (so does a publish that dropped copies, just before its merge).
So a batch is *pending* exactly while its tagged branch exists and its head is not a failed audit —
whatever happened to the run that last tried it. Only the rare branch whose head moved costs a call.
"""

from __future__ import annotations

from evcharging.lake.ingest import audit_failed, tag_for_branch
from evcharging.resources.lakefs import LakeFSResource
from evcharging.streaming.batches import BRANCH_PREFIX, TAG_PREFIX


def _refs(list_page, repository: str, prefix: str) -> dict[str, str]:
    """name -> commit id of every branch or tag starting with ``prefix`` (all pages)."""
    refs, after = {}, ""
    while True:
        page = list_page(repository, prefix=prefix, after=after, amount=1000)
        refs.update({r.id: r.commit_id for r in page.results})
        if not page.pagination.has_more:
            return refs
        after = page.pagination.next_offset


def pending_batches(lakefs: LakeFSResource, stream: str) -> list[str]:
    """Branches of ``stream``'s batches that are tagged, not merged and not blocked, in batch order."""
    sdk = lakefs.client().sdk_client
    tags = _refs(sdk.tags_api.list_tags, lakefs.repository, f"{TAG_PREFIX}{stream}-")
    branches = _refs(sdk.branches_api.list_branches, lakefs.repository, f"{BRANCH_PREFIX}{stream}-")
    repo = lakefs.repo()
    pending = []
    for branch, head in branches.items():
        tagged = tags.get(tag_for_branch(branch))
        if tagged and (tagged == head or not audit_failed(repo.commit(head).get_commit())):
            pending.append(branch)
    return sorted(pending)
