"""The lake layer: ingest batches audited and published (write, audit, publish), and main itself."""

import asyncio

import dagster as dg

from evcharging.audit.checks import CHECK_NAMES, audit
from evcharging.defs.lake.partitions import ingest_batches
from evcharging.defs.stream.assets import KAFKA_EVENTS
from evcharging.lake import ingest, main_ids
from evcharging.lake.main import main_snapshot
from evcharging.reference.datasets import STATIONS, VEHICLES
from evcharging.resources.lakefs import LakeFSResource
from evcharging.resources.mongo import MongoResource
from evcharging.settings import load_settings
from evcharging.streaming.batches import META

_CHECK_DOCS = {
    "contract_schema": "Every event matches the contract's columns, types and value domains (pandera).",
    "reference_ids_exist": "Station ids and vehicle model ids exist in the MongoDB reference data.",
    "session_sequences_consistent": "No (session, seq) twice; SoC, energy and time never go backwards.",
    "no_event_already_on_main": "No event id of the batch is already on main (or twice in the batch).",
    "event_times_plausible": "Event times between 2000-01-01 and a little over a year from now.",
    "quarantine_share": "Quarantined records warn; above EVCHARGING_AUDIT_MAX_QUARANTINE_SHARE they block.",
}


async def _reference_ids(mongo: MongoResource) -> tuple[set[str], set[str]]:
    async with mongo.open_database() as db:
        stations = await db[STATIONS.collection].find({}, {"_id": 1}).to_list()
        vehicles = await db[VEHICLES.collection].find({}, {"_id": 1}).to_list()
    return {d["_id"] for d in stations}, {d["_id"] for d in vehicles}


@dg.asset(
    partitions_def=ingest_batches,
    group_name="lake",
    kinds={"lakefs", "pandas", "pandera"},
    pool="lake_publish",  # one audit+merge at a time: "not already on main" must see the last merge
    # The stream reads the topic into ingest branches. The audit also reads the MongoDB reference ids,
    # but the data comes from Kafka: an edge from MongoDB would say it flows straight in here.
    deps=[KAFKA_EVENTS],
    check_specs=[dg.AssetCheckSpec(name, asset="ingest_batch", blocking=True, description=_CHECK_DOCS[name])
                 for name in CHECK_NAMES],
)
def ingest_batch(context: dg.AssetExecutionContext, lakefs: LakeFSResource, mongo: MongoResource) -> dg.MaterializeResult:
    """One micro-batch of charging events as the stream committed it on its lakeFS ingest branch.

    Audited by blocking checks; when none fails with severity ERROR the branch is merged into main
    (with the batch id and check summary in the merge commit) and deleted. When one fails, nothing
    is merged: the branch stays, with the failing checks recorded in its history, and the run fails
    on the blocking check. Re-materializing a partition already merged changes nothing.
    """
    commit = ingest.ingest_commit(lakefs, context.partition_key)
    base = {"branch": commit.branch, "batch_id": commit.metadata.get(f"{META}batch_id"),
            "ingest_commit": dg.MetadataValue.url(lakefs.commit_url(commit.commit_id)),
            "valid_rows": commit.valid_rows, "quarantined_rows": commit.quarantined_rows}
    if ingest.is_merged(lakefs, commit.commit_id):
        context.log.info(f"{commit.branch} is already on main: nothing to do")
        return dg.MaterializeResult(
            metadata={**base, "status": "already merged", "dagster/row_count": commit.valid_rows},
            check_results=[dg.AssetCheckResult(check_name=n, passed=True, description="audited and merged earlier")
                           for n in CHECK_NAMES])

    events = ingest.read_events(lakefs, commit.commit_id, ingest.batch_event_files(lakefs, commit))
    station_ids, model_ids = asyncio.run(_reference_ids(mongo))
    settings = load_settings()
    # main's files' event-time spans, learned by earlier audits on this machine (a cache: exact without it)
    file_times = main_ids.SqliteFileTimes(settings.data_dir / "audit" / "main_file_times.sqlite3")
    on_main = main_ids.batch_ids_on_main(lakefs, events, file_times)
    context.log.info(f"already-on-main lookup: {on_main.files} main files on the batch's dates, "
                     f"{on_main.files_opened} opened, {on_main.files_read} read (the rest are outside its times)")
    outcomes = audit(events, station_ids=station_ids, vehicle_model_ids=model_ids, ids_on_main=on_main.ids,
                     quarantined=commit.quarantined_rows,
                     max_quarantine_share=settings.audit_max_quarantine_share)
    failed = {o.name: o.description for o in outcomes if o.blocks}
    if failed:
        ingest.record_failed_audit(lakefs, commit, failed)
        context.log.warning(f"{commit.branch} not merged: {failed}")
        status = {"status": "blocked: " + ", ".join(failed)}
    else:
        summary = {o.name: "passed" if o.passed else f"{o.severity}: {o.description}" for o in outcomes}
        merge_commit = ingest.publish(lakefs, commit, {
            f"{META}ingest_branch": commit.branch, f"{META}ingest_commit": commit.commit_id,
            **{k: v for k, v in commit.metadata.items() if k.startswith(META)},
            f"{ingest.AUDIT}checks": ", ".join(f"{k}={v}" for k, v in summary.items())[:4000],
            # lakeFS shows this as a link from the merge commit back to the Dagster run.
            "::lakefs::Dagster::url[url:ui]": f"{settings.dagster_url.rstrip('/')}/runs/{context.run.run_id}",
        })
        status = {"status": "merged", "merge_commit": dg.MetadataValue.url(lakefs.commit_url(merge_commit))}
    return dg.MaterializeResult(
        metadata={**base, **status, "dagster/row_count": len(events)},
        check_results=[dg.AssetCheckResult(check_name=o.name, passed=o.passed, severity=dg.AssetCheckSeverity(o.severity),
                                           description=o.description, metadata=o.metadata) for o in outcomes])


@dg.asset(group_name="lake", kinds={"lakefs"}, deps=[ingest_batch])
def lake_main(context: dg.AssetExecutionContext, lakefs: LakeFSResource) -> dg.MaterializeResult:
    """The lake's main branch: every published charging event (``events/event_date=…/*.parquet``).

    Each materialization records main's head commit as the data version, with a link to it and the
    rows added since the previous one; the warehouse loads exactly that difference.
    """
    previous = context.instance.get_latest_materialization_event(context.asset_key)
    prev_meta = previous.asset_materialization.metadata if previous and previous.asset_materialization else {}
    prev_commit = prev_meta["lakefs_commit"].value if "lakefs_commit" in prev_meta else None
    prev_total = prev_meta["dagster/row_count"].value if "dagster/row_count" in prev_meta else 0
    snap = main_snapshot(lakefs, since=prev_commit)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(snap.commit_id),
        metadata={
            "lakefs_commit": snap.commit_id,
            "lakefs_url": dg.MetadataValue.url(lakefs.commit_url(snap.commit_id)),
            "previous_commit": prev_commit or "none",
            "rows_added": snap.rows_added,
            "files_added": snap.files_added,
            "dagster/row_count": prev_total + snap.rows_added if prev_commit else snap.rows_added,
        })
