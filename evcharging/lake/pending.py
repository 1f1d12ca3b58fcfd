"""Ingest batches waiting to be published, from two listings (no per-batch call).

The stream leaves each finished batch as a branch ``ingest-<stream>-<batch>`` whose head is the
commit its tag ``ingested-<stream>-<batch>`` points to. Publishing deletes the branch; a failed
audit adds a commit on top of it. So a batch is *pending* exactly while its branch exists and its
head is still its tag's commit — whatever happened to the run that last tried it.
"""

from __future__ import annotations

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
    return sorted(b for b, head in branches.items() if tags.get(TAG_PREFIX + b.removeprefix(BRANCH_PREFIX)) == head)
