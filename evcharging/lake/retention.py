"""Retention of what every published batch leaves behind in lakeFS: its ``ingested-…`` tag.

The stream tags each finished batch; once the batch is published (its branch merged and deleted)
the tag is only needed for a while: the stream looks its newest batch's tag up when Spark replays
that batch after a crash. Past the retention window the tag goes; the batch's provenance stays in
its merge commit on main (``evcharging.ingest_branch``, ``evcharging.ingest_commit``, offsets and
counts). Tags are listed from the oldest, and the listing stops at the first tag inside the window,
so each pass costs what it prunes, not what was ever published.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from evcharging.lake.ingest import branch_for_tag
from evcharging.lake.pending import ingest_branches
from evcharging.resources.lakefs import LakeFSResource
from evcharging.streaming.batches import TAG_PREFIX

KEEP_NEWEST = 10  # never pruned, whatever their age: the stream may replay its newest batch


@dataclass(frozen=True)
class TagPruning:
    pruned: list[str]  # tags deleted, oldest first
    oldest_kept: str | None  # the oldest ingest tag left (None: none left)


def prune_published_tags(lakefs: LakeFSResource, stream: str, older_than_s: float, now: float | None = None,
                         keep_newest: int = KEEP_NEWEST) -> TagPruning:
    """Delete the tags of ``stream``'s published batches whose commit is older than ``older_than_s``;
    a batch whose branch still exists (waiting or blocked) keeps its tag."""
    now = time.time() if now is None else now
    repo = lakefs.repo()
    unpublished = set(ingest_branches(lakefs, stream))
    candidates, oldest_kept, complete = [], None, True
    for tag in repo.tags(prefix=f"{TAG_PREFIX}{stream}-"):
        if branch_for_tag(tag.id) in unpublished:
            oldest_kept = oldest_kept or tag.id
            continue
        if now - tag.get_commit().creation_date < older_than_s:
            oldest_kept, complete = oldest_kept or tag.id, False
            break  # names are batch order: every later tag is younger
        candidates.append(tag.id)
    if complete:  # the listing ran out inside the old tags: the newest few stay
        kept = candidates[len(candidates) - keep_newest:] if keep_newest else []
        candidates = candidates[:max(0, len(candidates) - keep_newest)]
        oldest_kept = min([t for t in (oldest_kept, *kept) if t], default=None)
    for name in candidates:
        repo.tag(name).delete()
    return TagPruning(candidates, oldest_kept)
