"""The two reference datasets, each described once: format, documents, generator, indexes.

:meth:`ReferenceDataset.prepare` turns a CSV path — or, when there is none, the synthetic
generator — into validated, normalised documents plus the rejected rows. Storing them is
:func:`evcharging.reference.store.store_reference`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pymongo import ASCENDING, IndexModel

from evcharging.reference.stations import STATIONS_FORMAT, station_documents
from evcharging.reference.synthetic import (
    DEFAULT_STATION_ROWS,
    DEFAULT_VEHICLE_ROWS,
    synthetic_stations,
    synthetic_vehicles,
)
from evcharging.reference.table import (
    Normalised,
    RawTable,
    ReferenceDataError,
    RejectedRow,
    TableFormat,
    read_csv,
)
from evcharging.reference.vehicles import VEHICLES_FORMAT, vehicle_documents


@dataclass(frozen=True)
class PreparedData:
    """What one source yields: documents to store, rows left out, and normalisation counts."""

    collection: str
    source: str
    documents: list[dict]
    rejected: tuple[RejectedRow, ...]
    normalisation: dict[str, int]


@dataclass(frozen=True)
class ReferenceDataset:
    collection: str
    format: TableFormat
    to_documents: Callable[[pd.DataFrame], Normalised]
    synthesize: Callable[[int, int], RawTable]
    default_rows: int
    indexes: tuple[IndexModel, ...]
    geo_field: str | None = None

    def prepare(self, csv_path: Path | None = None, *, seed: int = 0, rows: int | None = None) -> PreparedData:
        """Read ``csv_path`` (or generate ``rows`` rows from ``seed``), validate and normalise."""
        raw = read_csv(Path(csv_path)) if csv_path else self.synthesize(rows or self.default_rows, seed)
        valid = self.format.validate(raw)
        if valid.frame.empty:
            # Storing nothing would empty the collection; a source with no valid row is a broken source.
            first = "; ".join(f"line {r.line}: {r.reason}" for r in valid.rejected[:3])
            raise ReferenceDataError(f"{raw.source}: all {len(valid.rejected)} rows rejected ({first} …)")
        normalised = self.to_documents(valid.frame)
        return PreparedData(self.collection, raw.source, normalised.documents, valid.rejected, normalised.counts)


# The station id is the _id, unique by construction; the other indexes serve the simulator's
# lookups by city and charger type. The link is the one column unique per vehicle in the source.
STATIONS = ReferenceDataset(
    collection="stations",
    format=STATIONS_FORMAT,
    to_documents=station_documents,
    synthesize=synthetic_stations,
    default_rows=DEFAULT_STATION_ROWS,
    indexes=(
        IndexModel([("city", ASCENDING)], name="city"),
        IndexModel([("charger_type", ASCENDING)], name="charger_type"),
        IndexModel([("operator", ASCENDING)], name="operator"),
    ),
    geo_field="location",
)
VEHICLES = ReferenceDataset(
    collection="vehicles",
    format=VEHICLES_FORMAT,
    to_documents=vehicle_documents,
    synthesize=synthetic_vehicles,
    default_rows=DEFAULT_VEHICLE_ROWS,
    indexes=(
        IndexModel([("link", ASCENDING)], name="link_unique", unique=True),
        IndexModel([("name", ASCENDING)], name="name"),
    ),
)
