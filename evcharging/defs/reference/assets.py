"""The MongoDB reference collections: charging stations and vehicles.

Each asset reads its Kaggle CSV when one is configured (``EVCHARGING_STATIONS_CSV`` /
``EVCHARGING_VEHICLES_CSV``, or ``csv_path`` in the run config) and otherwise generates synthetic
data of the same shape, validates every row, and makes the collection mirror the valid rows.
Rejected rows never reach MongoDB; they are reported in the materialization's metadata. A reload
that rejects too many rows, or would remove too many stored documents, fails with a clear error
and changes nothing (``EVCHARGING_REFERENCE_MAX_REJECTED_SHARE`` / ``_MAX_REMOVED_SHARE``).
"""

import asyncio
from pathlib import Path

import dagster as dg
from pydantic import Field

from evcharging.defs.retry import TRANSIENT_RETRY, transient_only
from evcharging.reference.datasets import STATIONS, VEHICLES, ReferenceDataset
from evcharging.reference.store import LoadResult, ReferenceReloadRefused, store_reference
from evcharging.reference.table import rejected_rows_markdown
from evcharging.resources.mongo import MongoResource
from evcharging.settings import load_settings


class ReferenceSourceConfig(dg.Config):
    csv_path: str | None = Field(None, description="A Kaggle-format CSV; overrides the path setting.")
    seed: int = Field(0, description="Seed of the synthetic generator, used when no CSV is configured.")
    synthetic_rows: int | None = Field(None, description="Rows to generate (default: as many as the Kaggle file).")


async def _load(dataset: ReferenceDataset, csv_path: Path | None, config: ReferenceSourceConfig, mongo: MongoResource) -> LoadResult:
    prepared = dataset.prepare(csv_path, seed=config.seed, rows=config.synthetic_rows)
    settings = load_settings()
    async with mongo.open_database() as db:
        return await store_reference(db, dataset, prepared, max_rejected_share=settings.reference_max_rejected_share,
                                     max_removed_share=settings.reference_max_removed_share)


def _materialize(
    context: dg.AssetExecutionContext,
    dataset: ReferenceDataset,
    configured_csv: Path | None,
    config: ReferenceSourceConfig,
    mongo: MongoResource,
) -> dg.MaterializeResult:
    csv_path = Path(config.csv_path) if config.csv_path else configured_csv
    try:
        result = asyncio.run(_load(dataset, csv_path, config, mongo))
    except ReferenceReloadRefused as refused:  # a clear failure, not worth a retry
        raise dg.Failure(str(refused), allow_retries=False) from None
    context.log.info(
        f"{mongo.database}.{result.collection}: {result.loaded} loaded ({result.inserted} new, {result.updated} "
        f"changed, {result.removed} removed), {result.rejected_count} rejected, from {result.source}"
    )
    if result.rejected:
        context.log.warning(f"{result.rejected_count} rows rejected; first: line {result.rejected[0].line}: {result.rejected[0].reason}")
    if dataset.geo_field and not result.geo_index.startswith("2dsphere on"):
        context.log.warning(result.geo_index)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.loaded,
            "rejected_rows": result.rejected_count,
            "rejected_preview": dg.MetadataValue.md(rejected_rows_markdown(result.rejected)),
            "source": dg.MetadataValue.path(result.source) if csv_path else result.source,
            "inserted": result.inserted,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "removed": result.removed,
            **result.normalisation,
            "geo_index": result.geo_index,
            "collection": f"{mongo.database}.{result.collection}",
        }
    )


# Static, not read from settings at import: the definitions (and their snapshot test) are the same
# wherever they load; the materialization's "source" says whether a CSV or the generator was used.
_KINDS = {"mongodb", "pandas", "csv"}


@dg.asset(key_prefix="mongodb", group_name="reference", kinds=_KINDS, retry_policy=TRANSIENT_RETRY)
@transient_only
def stations(context: dg.AssetExecutionContext, config: ReferenceSourceConfig, mongo: MongoResource) -> dg.MaterializeResult:
    """Charging stations (one document per station, ``_id`` = station id such as ``EVS00001``).

    Location as a GeoJSON point, city, charger type with the raw ``capacity_kw`` and the deliverable
    ``power_kw`` (capped by charger type: AC Level 1 1.9 kW, AC Level 2 22 kW), opening hours as
    minutes, connector types as a list, parking spots = chargers. Source: the Kaggle "Global EV
    Charging Stations" CSV, or synthetic stations of the same shape when none is configured.
    """
    return _materialize(context, STATIONS, load_settings().stations_csv, config, mongo)


@dg.asset(key_prefix="mongodb", group_name="reference", kinds=_KINDS, retry_policy=TRANSIENT_RETRY)
@transient_only
def vehicles(context: dg.AssetExecutionContext, config: ReferenceSourceConfig, mongo: MongoResource) -> dg.MaterializeResult:
    """Electric vehicle models (one document per model, ``_id`` = slug of the car name).

    Battery, efficiency, DC limit ``dc_max_kw`` derived from the km-per-hour fast-charge figure
    (None when the car has none), an assumed 11 kW AC limit, connector types by make, price (None
    when unknown). Source: the Kaggle "Electric Vehicle Specifications and Prices" CSV
    (ev-database.org), or synthetic vehicles of the same shape when none is configured.
    """
    return _materialize(context, VEHICLES, load_settings().vehicles_csv, config, mongo)
