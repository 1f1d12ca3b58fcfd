"""Storing prepared reference documents in MongoDB (or FerretDB) with PyMongo's async client.

The collection ends up mirroring its source, unless the reload looks like a broken source: it is
refused, with nothing changed, when more than a configured share of its rows was rejected or when it
would remove more than a configured share of the stored documents (:func:`reload_refusal`). A
station or vehicle that leaves the source stays resolvable in the warehouse, where the dimension
keeps it marked retired. Documents whose ``_id`` the source no longer has are
deleted first (so a unique index cannot trip over a stale document); every changed document is
then upserted by its stable ``_id`` (``ReplaceOne(..., upsert=True)``) and every new one inserted,
in chunks of one ``bulk_write``. Documents identical to the stored ones are not written, so a
reload writes nothing. Without transactions a load that fails half-way leaves a mix of old and new
documents; running it again completes it.

Only features FerretDB v1 has are used: no transactions, ``$lookup``, change streams or
``dropTarget``. FerretDB v1 has no 2dsphere index either; the geo index is attempted and, where the
server refuses it, skipped with one log line, so the same code runs on real MongoDB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pymongo import InsertOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure

from evcharging.reference.datasets import PreparedData, ReferenceDataset
from evcharging.reference.table import RejectedRow

log = logging.getLogger(__name__)

# Small enough that a FerretDB without the upsert-iterator patch (see INFRA-NOTES) is the only
# thing that could still stall, large enough that 5,000 stations take ten round trips.
DEFAULT_CHUNK_SIZE = 500
DUPLICATE_KEY = 11000


class ReferenceReloadRefused(RuntimeError):
    """A reload that would damage the stored reference data; nothing was changed."""


def reload_refusal(collection: str, source: str, valid: int, rejected: int, stored: int, removed: int,
                   max_rejected_share: float, max_removed_share: float) -> str | None:
    """Why a reload of ``collection`` must not go ahead, or None when it may."""
    rows = valid + rejected
    if rows and rejected / rows > max_rejected_share:
        return (f"{collection}: {rejected} of {rows} rows of {source} were rejected ({rejected / rows:.1%}, more than "
                f"EVCHARGING_REFERENCE_MAX_REJECTED_SHARE={max_rejected_share:g}); nothing was changed. Fix the "
                "source (the rejected rows are listed with their line and reason) and reload.")
    if stored and removed / stored > max_removed_share:
        return (f"{collection}: the reload from {source} would remove {removed} of the {stored} stored documents "
                f"({removed / stored:.1%}, more than EVCHARGING_REFERENCE_MAX_REMOVED_SHARE={max_removed_share:g}); "
                "nothing was changed. If the source really shrank, raise the setting for this reload.")
    return None


@dataclass(frozen=True)
class LoadResult:
    collection: str
    source: str
    loaded: int  # documents in the collection from this source
    inserted: int
    updated: int  # replaced with different content
    unchanged: int
    removed: int  # stale documents the source no longer has
    rejected: tuple[RejectedRow, ...]
    normalisation: dict[str, int]
    geo_index: str  # what happened to the 2dsphere index, for the log and the asset metadata

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)


async def ensure_indexes(db: AsyncDatabase, dataset: ReferenceDataset) -> str:
    """Create the dataset's indexes; returns a one-line account of the geo index."""
    collection = db[dataset.collection]
    existing = {index["name"] async for index in await collection.list_indexes()}
    for index in dataset.indexes:
        # One command per missing index: FerretDB v1.24 panics (and drops the connection) on a
        # multi-index createIndexes whose indexes all exist already.
        if index.document["name"] not in existing:
            await collection.create_indexes([index])
    if dataset.geo_field is None:
        return "none (no location field)"
    try:
        await collection.create_index([(dataset.geo_field, "2dsphere")], name=f"{dataset.geo_field}_2dsphere")
    except OperationFailure as exc:
        reason = (exc.details or {}).get("errmsg", str(exc))
        message = f"2dsphere index on {dataset.collection}.{dataset.geo_field} skipped: the server refused it ({reason})"
        log.warning(message)
        return message
    return f"2dsphere on {dataset.geo_field}"


async def store_reference(
    db: AsyncDatabase, dataset: ReferenceDataset, prepared: PreparedData, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_rejected_share: float = 1.0, max_removed_share: float = 1.0,
) -> LoadResult:
    """Make ``db[dataset.collection]`` hold exactly ``prepared.documents``; idempotent. Raises
    :class:`ReferenceReloadRefused` before writing anything when the shares are exceeded."""
    collection = db[dataset.collection]
    # Reference collections are small (thousands of documents): comparing against what is stored
    # client-side makes a reload write nothing, and avoids a `$nin` of every id (16 MB command limit).
    stored = {doc["_id"]: doc async for doc in collection.find({})}
    wanted = {doc["_id"] for doc in prepared.documents}
    stale = [_id for _id in stored if _id not in wanted]
    refusal = reload_refusal(dataset.collection, prepared.source, len(prepared.documents), len(prepared.rejected),
                             len(stored), len(stale), max_rejected_share, max_removed_share)
    if refusal:
        raise ReferenceReloadRefused(refusal)
    geo_index = await ensure_indexes(db, dataset)
    removed = 0
    for chunk in _chunks(stale, chunk_size):
        removed += (await collection.delete_many({"_id": {"$in": chunk}})).deleted_count
    changed = [doc for doc in prepared.documents if stored.get(doc["_id"]) != doc]
    inserted = updated = 0
    for chunk in _chunks(changed, chunk_size):
        # New ids are inserted (over ten times faster than an upsert on FerretDB); if a concurrent
        # load inserted one meanwhile, its duplicate-key failure is retried as an upsert below.
        requests = [InsertOne(doc) if doc["_id"] not in stored else _upsert(doc) for doc in chunk]
        try:
            result = (await collection.bulk_write(requests, ordered=False)).bulk_api_result
        except BulkWriteError as exc:
            result = exc.details
            failed = [error["index"] for error in result["writeErrors"]]
            if any(error["code"] != DUPLICATE_KEY for error in result["writeErrors"]):
                raise
            retried = await collection.bulk_write([_upsert(chunk[i]) for i in failed])
            updated += retried.matched_count
            inserted += retried.upserted_count
        inserted += result["nInserted"] + result["nUpserted"]
        updated += result["nMatched"]
    return LoadResult(
        collection=dataset.collection,
        source=prepared.source,
        loaded=len(prepared.documents),
        inserted=inserted,
        updated=updated,
        unchanged=len(prepared.documents) - len(changed),
        removed=removed,
        rejected=prepared.rejected,
        normalisation=prepared.normalisation,
        geo_index=geo_index,
    )


def _upsert(doc: dict) -> ReplaceOne:
    return ReplaceOne({"_id": doc["_id"]}, doc, upsert=True)


def _chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]
