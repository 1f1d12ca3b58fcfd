"""Copies of events: Kafka delivers at least once, the lake keeps each event exactly once.

An event id met again — later in the same batch, or already on main — is either an *exact copy*
(the same content: a producer retry, a re-sent run) that is dropped and counted, or a *conflict*
(the same id with other content) that goes to quarantine with its reason. Inside a batch the
first arrival (lowest Kafka partition and offset) is the original; against main, main's row is.

Content is the contract's fields and the rescued fields, compared as values: the Kafka coordinates
differ between copies by nature, and the same time read from two files may come in other units.
Only rows whose id repeats are compared, so a batch without copies costs one ``duplicated`` pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from evcharging.contracts import FIELDS, RESCUED_COLUMN

CONTENT_COLUMNS = (*(f.name for f in FIELDS), RESCUED_COLUMN)
CONFLICT_WITH_MAIN = "conflict: event_id already on main with other content"
CONFLICT_IN_BATCH = "conflict: event_id repeated in the batch with other content"


@dataclass(frozen=True)
class Copies:
    """Row labels of the batch's exact copies, and of its conflicts with their reasons."""

    duplicates: pd.Index
    conflicts: pd.Series  # label → reason

    @property
    def empty(self) -> bool:
        return self.duplicates.empty and self.conflicts.empty

    def drop_from(self, events: pd.DataFrame) -> pd.DataFrame:
        """The batch without its copies and conflicts: what goes on to the audit and to main."""
        return events.drop(index=self.duplicates.union(self.conflicts.index))


def content(rows: pd.DataFrame) -> pd.Series:
    """Per row, a tuple of its content values (None for null or absent), comparable with ``==``."""
    frame = rows.reindex(columns=list(CONTENT_COLUMNS))
    if "event_time" in rows:
        frame["event_time"] = pd.to_datetime(rows["event_time"], utc=True).dt.as_unit("ms")
    frame = frame.astype(object).where(frame.notna(), None)
    return pd.Series(list(map(tuple, frame.itertuples(index=False, name=None))), index=rows.index)


def find_copies(events: pd.DataFrame, on_main: pd.DataFrame) -> Copies:
    """The exact copies and conflicts of ``events`` (one batch, with Kafka coordinates) among
    themselves and against ``on_main`` (main's rows of the batch's ids that main already holds)."""
    if events.empty:
        return Copies(pd.Index([]), pd.Series(dtype=object))
    ids = events["event_id"].astype(str)
    main_ids = set(on_main["event_id"].astype(str)) if len(on_main) else set()
    repeated = ids.duplicated(keep=False) | ids.isin(main_ids)
    if not repeated.any():
        return Copies(pd.Index([]), pd.Series(dtype=object))
    rows = events[repeated].sort_values(["kafka_partition", "kafka_offset"])
    mine = content(rows)
    original = dict(zip(on_main["event_id"].astype(str), content(on_main), strict=True)) if main_ids else {}
    duplicates, conflicts = [], {}
    for label, event_id in ids[rows.index].items():
        if event_id not in original:  # not on main: the first arrival in the batch is the original
            original[event_id] = mine[label]
            continue
        if mine[label] == original[event_id]:
            duplicates.append(label)
        else:
            conflicts[label] = CONFLICT_WITH_MAIN if event_id in main_ids else CONFLICT_IN_BATCH
    return Copies(pd.Index(duplicates), pd.Series(conflicts, dtype=object))
