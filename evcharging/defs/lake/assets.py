"""The lake layer: ingest batches audited and published (write, audit, publish), and main itself."""

import asyncio

import dagster as dg
from pydantic import Field

from evcharging.audit.checks import CHECK_NAMES, SEVERITY
from evcharging.audit.counts import sum_counts
from evcharging.defs.lake.partitions import ingest_batches
from evcharging.defs.retry import TRANSIENT_RETRY, transient_only
from evcharging.defs.stream.assets import KAFKA_EVENTS
from evcharging.lake import main_ids
from evcharging.lake.main import main_snapshot
from evcharging.lake.publish import OPERATOR_ACTION, BatchPublication, ReferenceIds, publish_batch
from evcharging.lake.ingest import unpublished_batches
from evcharging.reference.datasets import STATIONS, VEHICLES
from evcharging.resources.lakefs import LakeFSResource
from evcharging.resources.mongo import MongoResource
from evcharging.settings import load_settings
from evcharging.warehouse.tables import markdown_table

# What each check asserts, then (from the audit's SEVERITY) what it blocks on and why: the UI shows both.
_CHECK_DOCS = {name: f"{what} {SEVERITY[name]}" for name, what in {
    "contract_schema": "Every event matches the contract's columns, types and value domains (pandera).",
    "reference_ids_exist": "Station ids and vehicle model ids exist in the MongoDB reference data.",
    "session_sequences_consistent": "Each reading (session_id, seq) once, on main and in the batch; SoC, energy and "
                                    "time never go backwards.",
    "no_event_already_on_main": "Each event id once: what remains is new to main.",
    "event_times_plausible": "Event times between 2000-01-01 and a little over a year from now.",
    "quarantine_share": "The share of the batch's records in quarantine.",
}.items()}


async def _reference_ids(mongo: MongoResource) -> ReferenceIds:
    async with mongo.open_database() as db:
        stations = await db[STATIONS.collection].find({}, {"_id": 1}).to_list()
        vehicles = await db[VEHICLES.collection].find({}, {"_id": 1}).to_list()
    return ReferenceIds({d["_id"] for d in stations}, {d["_id"] for d in vehicles})


def _check_results(batches: list[BatchPublication]) -> list[dg.AssetCheckResult]:
    """One result per check for the run's batches: failed if it failed for any batch (ERROR if any
    such failure blocks), naming each batch it failed for; each with the records it quarantined and
    dropped and the batches it blocked in this run (``quarantined_rows``, ``dropped_rows``,
    ``blocked_batches``)."""
    results = []
    totals = sum_counts(b.counts for b in batches)
    for name in CHECK_NAMES:
        counts = {"quarantined_rows": totals[name]["quarantined"], "dropped_rows": totals[name]["dropped"],
                  "blocked_batches": totals[name]["blocked"]}
        failures = [(b, o) for b in batches for o in b.outcomes if o.name == name and not o.passed]
        audited = [o for b in batches for o in b.outcomes if o.name == name]
        if not audited:  # every batch of the run was merged earlier
            results.append(dg.AssetCheckResult(check_name=name, passed=True, description="audited and merged earlier",
                                               metadata=counts))
            continue
        if not failures:
            only = audited[0] if len(audited) == 1 else None
            results.append(dg.AssetCheckResult(
                check_name=name, passed=True, description=only.description if only else f"passed for {len(audited)} batches",
                metadata={**(only.metadata if only else {}), **counts}))
            continue
        blocking = any(o.blocks for _, o in failures)
        description = "; ".join(o.description if len(batches) == 1 else f"{b.branch}: {o.description}"
                                for b, o in failures)
        metadata = failures[0][1].metadata if len(failures) == 1 else {"batches_failed": len(failures)}
        results.append(dg.AssetCheckResult(
            check_name=name, passed=False, description=description[:4000], metadata={**metadata, **counts},
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN))
    return results


class IngestBatchConfig(dg.Config):
    publish_without_offending_rows: bool = Field(
        False, description="Operator action for a blocked batch: move the rows that fail a check to quarantine (with "
                           "their reasons), accept the quarantine share, and publish the rest. Recorded in the merge "
                           "commit and this materialization.")


def _run_metadata(lakefs: LakeFSResource, batches: list[BatchPublication]) -> dict:
    statuses = [b.status for b in batches]
    metadata = {
        "batches": len(batches), "merged": statuses.count("merged"), "blocked": statuses.count("blocked"),
        "already_merged": statuses.count("already merged"),
        "status": statuses[0] if len(batches) == 1 else ", ".join(
            f"{statuses.count(s)} {s}" for s in ("merged", "blocked", "already merged", "blocked earlier")
            if s in statuses),
        "valid_rows": sum(b.valid_rows for b in batches),
        "quarantined_rows": sum(b.quarantined_rows for b in batches),
        "duplicates_dropped": sum(b.duplicates_dropped for b in batches),
        "conflicts_quarantined": sum(b.conflicts_quarantined for b in batches),
        "resent_readings_dropped": sum(b.resent_dropped for b in batches),
        "reading_conflicts_quarantined": sum(b.reading_conflicts for b in batches),
        # per check (and the stream): records quarantined and dropped by published batches, batches blocked;
        # sum over runs with evcharging.audit.counts.sum_counts
        "audit_counts": dg.MetadataValue.json(sum_counts(b.counts for b in batches)),
        "rescued_rows": sum(b.rescued_rows for b in batches),
        "withdrawn_by_operator": sum(b.withdrawn_rows for b in batches),
        "dagster/row_count": sum(b.rows for b in batches),
        "batch_table": dg.MetadataValue.md(markdown_table(
            ["branch", "status", "events", "quarantined", "copies dropped", "conflicts", "re-sent readings",
             "reading conflicts", "rescued", "ingest commit", "merge commit"],
            [[b.branch, b.status, b.valid_rows, b.quarantined_rows, b.duplicates_dropped, b.conflicts_quarantined,
              b.resent_dropped, b.reading_conflicts, b.rescued_rows, b.ingest_commit[:12], (b.merge_commit or "")[:12]]
             for b in batches[:200]])),
    }
    if len(batches) == 1:
        only = batches[0]
        metadata |= {"branch": only.branch, "batch_id": only.batch_id,
                     "ingest_commit": dg.MetadataValue.url(lakefs.commit_url(only.ingest_commit))}
        if only.merge_commit:
            metadata["merge_commit"] = dg.MetadataValue.url(lakefs.commit_url(only.merge_commit))
    return metadata


@dg.asset(
    partitions_def=ingest_batches,
    # The sensor launches one run for a range of new batches: a run start-up per batch would cost more
    # than auditing a small batch.
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="lake",
    kinds={"lakefs", "pandas", "pandera"},
    pool="lake_publish",  # one audit+merge at a time: "not already on main" must see the last merge
    # The stream reads the topic into ingest branches. The audit also reads the MongoDB reference ids,
    # but the data comes from Kafka: an edge from MongoDB would say it flows straight in here.
    deps=[KAFKA_EVENTS],
    check_specs=[dg.AssetCheckSpec(name, asset="ingest_batch", blocking=True, description=_CHECK_DOCS[name])
                 for name in CHECK_NAMES],
    retry_policy=TRANSIENT_RETRY,
)
@transient_only
def ingest_batch(context: dg.AssetExecutionContext, config: IngestBatchConfig, lakefs: LakeFSResource,
                 mongo: MongoResource) -> dg.MaterializeResult:
    """One micro-batch of charging events as the stream committed it on its lakeFS ingest branch.

    Audited by blocking checks; when none fails with severity ERROR the branch is merged into main
    (with the batch id and check summary in the merge commit) and deleted. When one fails, nothing
    is merged: the branch stays, with the failing checks recorded in its history, and the run fails
    on the blocking check. A run covers one batch or, as the sensor launches them, a range of
    batches in order (each audited against main as the previous one left it). Re-materializing a
    partition already merged changes nothing; re-materializing a blocked one audits it again (after
    its cause was fixed), or, with ``publish_without_offending_rows``, publishes it without the rows
    that fail (see the README's "When a batch is blocked"). Exact copies of events and re-sent
    readings are dropped and conflicts quarantined on the way, counted in the metadata and the merge
    commit; ``audit_counts`` has what each check quarantined, dropped and blocked.
    """
    settings = load_settings()
    reference = asyncio.run(_reference_ids(mongo))
    # main's files' event-time spans, learned by earlier audits on this machine (a cache: exact without it)
    file_times = main_ids.SqliteFileTimes(settings.data_dir / "audit" / "main_file_times.sqlite3")
    # lakeFS shows this as a link from the merge commit back to the Dagster run.
    run_link = {"::lakefs::Dagster::url[url:ui]": f"{settings.dagster_url.rstrip('/')}/runs/{context.run.run_id}"}
    batches, keys = [], context.partition_keys
    if config.publish_without_offending_rows:
        run_link[f"evcharging.audit.{OPERATOR_ACTION}_run"] = context.run.run_id
    for key in keys:
        batch = publish_batch(lakefs, key, reference, file_times, settings.audit_max_quarantine_share, run_link,
                              without_offending_rows=config.publish_without_offending_rows,
                              reaudit_blocked=len(keys) == 1, share_min_rows=settings.audit_share_min_rows)
        batches.append(batch)
        if batch.status == "blocked":  # each failure ends with what to do; the batches behind it go on
            context.log.warning(f"{key} not merged (the next batches are published without it): "
                                + " | ".join(f"{name}: {why}" for name, why in batch.failed.items()))
        else:
            context.log.info(f"{key}: {batch.status} ({batch.valid_rows} events; {batch.lookup or 'no audit needed'})")
    return dg.MaterializeResult(metadata=_run_metadata(lakefs, batches), check_results=_check_results(batches))


@dg.asset(group_name="lake", kinds={"lakefs"}, deps=[ingest_batch], retry_policy=TRANSIENT_RETRY)
@transient_only
def lake_main(context: dg.AssetExecutionContext, lakefs: LakeFSResource) -> dg.MaterializeResult:
    """The lake's main branch: every published charging event (``events/event_date=…/*.parquet``).

    Each materialization records main's head commit as the data version, with a link to it and the
    rows added since the previous one; the warehouse loads exactly that difference. It also shows
    how many ingest batches are not published yet and the age of the oldest, so a stuck batch
    cannot go unnoticed.
    """
    previous = context.instance.get_latest_materialization_event(context.asset_key)
    prev_meta = previous.asset_materialization.metadata if previous and previous.asset_materialization else {}
    prev_commit = prev_meta["lakefs_commit"].value if "lakefs_commit" in prev_meta else None
    prev_total = prev_meta["dagster/row_count"].value if "dagster/row_count" in prev_meta else 0
    snap = main_snapshot(lakefs, since=prev_commit)
    waiting = unpublished_batches(lakefs, load_settings().stream_name)
    if waiting.oldest_age_s is not None:
        context.log.info(f"{waiting.count} ingest batches not published yet, the oldest {waiting.oldest_branch} "
                         f"for {waiting.oldest_age_s / 60:.0f} min")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(snap.commit_id),
        metadata={
            "lakefs_commit": snap.commit_id,
            "lakefs_url": dg.MetadataValue.url(lakefs.commit_url(snap.commit_id)),
            "previous_commit": prev_commit or "none",
            "rows_added": snap.rows_added,
            "files_added": snap.files_added,
            "dagster/row_count": prev_total + snap.rows_added if prev_commit else snap.rows_added,
            "unpublished_batches": waiting.count,
            "oldest_unpublished_age_s": waiting.oldest_age_s if waiting.oldest_age_s is not None else 0,
            "oldest_unpublished_batch": waiting.oldest_branch or "none",
        })
