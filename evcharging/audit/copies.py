"""Copies of events: Kafka delivers at least once, the lake keeps each reading exactly once.

A record is met again in two ways, and each is resolved per row, never by holding the batch:

* *by event id* — later in the same batch, or already on main: an *exact copy* (the same content:
  a producer retry, a re-sent run) is dropped and counted; the same id with other content is a
  *conflict* and goes to quarantine with its reason;
* *by reading* — the same ``(session_id, seq)`` under another event id (a producer that makes new
  ids on retry): the same content but for the id is a *re-sent reading*, dropped and counted like
  an exact copy; other content is a conflict, quarantined with a reason naming both event ids.

Inside a batch the first arrival (lowest Kafka partition, then offset) is the original; against main,
main's row is. Both orders are fixed by the data, so a replay of the batch keeps the same events.

Content is the contract's fields and the rescued fields, compared as values: the Kafka coordinates
differ between copies by nature, and the same time read from two files may come in other units.
Only rows whose key repeats are compared, so a batch without copies costs two ``duplicated`` passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from evcharging.contracts import FIELDS, RESCUED_COLUMN

CONTENT_COLUMNS = (*(f.name for f in FIELDS), RESCUED_COLUMN)
READING = ("session_id", "seq")  # one reading of one session: what an event id stands for
CONFLICT_WITH_MAIN = "conflict: event_id already on main with other content"
CONFLICT_IN_BATCH = "conflict: event_id repeated in the batch with other content"
READING_CONFLICT_WITH_MAIN = "conflict: (session_id, seq) already on main with other content"
READING_CONFLICT_IN_BATCH = "conflict: (session_id, seq) repeated in the batch with other content"


def _empty() -> pd.Series:
    return pd.Series(dtype=object)


@dataclass(frozen=True)
class Copies:
    """Row labels of the batch's exact copies and re-sent readings (dropped), and of its conflicts
    by event id and by reading (quarantined), with their reasons."""

    duplicates: pd.Index  # the same event id and content
    conflicts: pd.Series  # label → reason: the same event id, other content
    resent: pd.Index = field(default_factory=lambda: pd.Index([]))  # the same reading and content, another id
    reading_conflicts: pd.Series = field(default_factory=_empty)  # label → reason: the same reading, other content

    @property
    def empty(self) -> bool:
        return self.dropped.empty and self.quarantined.empty

    @property
    def dropped(self) -> pd.Index:
        return self.duplicates.union(self.resent)

    @property
    def quarantined(self) -> pd.Series:
        """Every conflict, label → reason (what goes to the batch's quarantine)."""
        return pd.concat([self.conflicts, self.reading_conflicts]) if len(self.reading_conflicts) else self.conflicts

    def drop_from(self, events: pd.DataFrame) -> pd.DataFrame:
        """The batch without its copies and conflicts: what goes on to the audit and to main."""
        return events.drop(index=self.dropped.union(self.quarantined.index))


def content(rows: pd.DataFrame, columns=CONTENT_COLUMNS) -> pd.Series:
    """Per row, a tuple of its ``columns``' values (None for null or absent), comparable with ``==``."""
    frame = rows.reindex(columns=list(columns))
    if "event_time" in rows:
        frame["event_time"] = pd.to_datetime(rows["event_time"], utc=True).dt.as_unit("ms")
    frame = frame.astype(object).where(frame.notna(), None)
    return pd.Series(list(map(tuple, frame.itertuples(index=False, name=None))), index=rows.index)


def reading_keys(rows: pd.DataFrame) -> pd.Series:
    """Per row, its reading ``(session_id, seq)`` as one string (None where either is missing): the
    same form :mod:`evcharging.lake.main_ids` builds from main's files."""
    if rows.empty or not set(READING) <= set(rows.columns):
        return pd.Series(None, index=rows.index, dtype=object)
    seq = pd.to_numeric(rows["seq"], errors="coerce")
    keys = rows["session_id"].astype(str) + "\x1f" + seq.astype("Int64").astype(str)
    return keys.where(rows["session_id"].notna() & seq.notna(), None)


@dataclass(frozen=True)
class _Matches:
    copies: list  # labels whose content equals their original's
    conflicts: dict  # label → (original's event id, whether the original is on main)


def _match(rows: pd.DataFrame, keys: pd.Series, mine: pd.Series, originals: dict) -> _Matches:
    """Each of ``rows`` (in arrival order) against the original of its key: ``originals`` starts with
    main's (key → (event id, content)); a key not there takes its first arrival in the batch."""
    on_main, originals = set(originals), dict(originals)
    copies, conflicts = [], {}
    for label in rows.index:
        key = keys[label]
        if key not in originals:
            originals[key] = (rows.at[label, "event_id"], mine[label])
        elif mine[label] == originals[key][1]:
            copies.append(label)
        else:
            conflicts[label] = (originals[key][0], key in on_main)
    return _Matches(copies, conflicts)


def _arrival_order(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` by Kafka partition, then offset (a file written around the stream may lack them)."""
    columns = [c for c in ("kafka_partition", "kafka_offset") if c in rows]
    return rows.sort_values(columns, kind="stable") if columns else rows


def find_copies(events: pd.DataFrame, on_main: pd.DataFrame) -> Copies:
    """The exact copies, re-sent readings and conflicts of ``events`` (one batch, with Kafka
    coordinates) among themselves and against ``on_main`` (main's rows that share an event id or a
    reading with the batch)."""
    if events.empty:
        return Copies(pd.Index([]), _empty())
    main = _arrival_order(on_main) if len(on_main) else pd.DataFrame(columns=["event_id", *READING])
    # By event id first: a repeated id is resolved whatever its reading says.
    ids = events["event_id"].astype(str)
    main_ids = main["event_id"].astype(str)
    repeated = ids.duplicated(keep=False) | ids.isin(set(main_ids))
    by_id = _Matches([], {})
    if repeated.any():
        rows = _arrival_order(events[repeated])
        originals = dict(zip(main_ids, content(main), strict=True)) if len(main) else {}
        by_id = _match(rows, ids[rows.index], content(rows), {k: (k, v) for k, v in originals.items()})
    rest = events.drop(index=[*by_id.copies, *by_id.conflicts])
    # Then by reading, among what is left: the same (session_id, seq) under another event id.
    keys = reading_keys(rest)
    main_keys = reading_keys(main)
    known = keys.notna()
    repeated = known & (keys.duplicated(keep=False) | keys.isin(set(main_keys.dropna())))
    by_reading = _Matches([], {})
    if repeated.any():
        rows = _arrival_order(rest[repeated])
        without_id = [c for c in CONTENT_COLUMNS if c != "event_id"]
        originals = {}
        for key, event_id, value in zip(main_keys, main["event_id"].astype(str), content(main, without_id),
                                        strict=True):
            if key is not None:
                originals.setdefault(key, (event_id, value))  # main's first arrival, should it hold two
        by_reading = _match(rows, keys[rows.index], content(rows, without_id), originals)
    return Copies(
        pd.Index(by_id.copies),
        pd.Series({label: CONFLICT_WITH_MAIN if main_side else CONFLICT_IN_BATCH
                   for label, (_, main_side) in by_id.conflicts.items()}, dtype=object),
        pd.Index(by_reading.copies),
        pd.Series({label: reading_conflict(main_side, original, str(events.at[label, "event_id"]))
                   for label, (original, main_side) in by_reading.conflicts.items()}, dtype=object))


def reading_conflict(on_main: bool, kept: str, this: str) -> str:
    """The reason of a conflicting reading: its kind, then both event ids in brackets (split off by
    :func:`reason_kind` when reasons are counted)."""
    if on_main:
        return f"{READING_CONFLICT_WITH_MAIN} [on main: {kept}, this: {this}]"
    return f"{READING_CONFLICT_IN_BATCH} [kept: {kept}, this: {this}]"


def reason_kind(reason: str) -> str:
    """A reason without its bracketed details (the event ids of a conflict): what reasons are counted by."""
    return reason.split(" [", 1)[0].strip()
