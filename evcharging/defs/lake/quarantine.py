"""The lake's quarantine: records the stream could not accept, by reason, batch and time."""

from datetime import UTC, datetime

import dagster as dg

from evcharging.defs.lake.assets import ingest_batch
from evcharging.lake.quarantine import QuarantineSummary, quarantined_batches
from evcharging.resources.lakefs import LakeFSResource
from evcharging.settings import load_settings

_REASONS = dg.TableSchema(columns=[dg.TableColumn("reason", "string"), dg.TableColumn("rows", "int")])
_BATCHES = dg.TableSchema(columns=[dg.TableColumn("batch", "string"), dg.TableColumn("committed (UTC)", "string"),
                                   dg.TableColumn("rows", "int"), dg.TableColumn("reasons", "string"),
                                   dg.TableColumn("lakefs", "string")])
_EXAMPLES = dg.TableSchema(columns=[dg.TableColumn("batch", "string"), dg.TableColumn("partition", "int"),
                                    dg.TableColumn("offset", "int"), dg.TableColumn("reason", "string"),
                                    dg.TableColumn("value", "string", description="the raw Kafka value, escaped")])


def _utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


@dg.asset(group_name="lake", kinds={"lakefs", "parquet"}, deps=[ingest_batch],
          automation_condition=dg.AutomationCondition.eager())
def lake_quarantine(context: dg.AssetExecutionContext, lakefs: LakeFSResource) -> dg.MaterializeResult:
    """Kafka records the stream quarantined instead of ingesting (``quarantine/events/`` of each ingest
    commit, kept as raw bytes with their Kafka coordinates and every broken rule).

    Each materialization reads the batches committed since the previous one and adds them up: rows
    per reason, per batch (with a link to the batch's quarantine objects in lakeFS) and, plotted
    over materializations, ``new_rows`` and the running total. Raw values are shown escaped.
    """
    stream = load_settings().stream_name
    previous = context.instance.get_latest_materialization_event(context.asset_key)
    prev_meta = previous.asset_materialization.metadata if previous and previous.asset_materialization else {}
    summary = QuarantineSummary.from_dict(prev_meta["summary"].value if "summary" in prev_meta else None, stream)
    new, last_tag = quarantined_batches(lakefs, stream, after=summary.last_tag)
    summary = summary.add(new, last_tag, lakefs)
    context.log.info(f"stream {stream}: {len(new)} new batches with quarantined records "
                     f"({sum(b.rows for b in new)} rows), up to {last_tag or 'no batch yet'}")
    examples = [dg.TableRecord(e) for e in reversed(summary.examples)]
    batches = [dg.TableRecord({"batch": b["batch"], "committed (UTC)": _utc(b["committed_at"]), "rows": b["rows"],
                               "reasons": b["reasons"], "lakefs": b["lakefs"]}) for b in reversed(summary.batches)]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": summary.rows,
        "new_rows": sum(b.rows for b in new),
        "top_reason": next(iter(summary.rows_by_reason), "none"),
        "rows_by_reason": dg.MetadataValue.table(
            [dg.TableRecord({"reason": r, "rows": n}) for r, n in summary.rows_by_reason.items()], schema=_REASONS),
        "batches": dg.MetadataValue.table(batches, schema=_BATCHES),
        "examples": dg.MetadataValue.table(examples, schema=_EXAMPLES),  # table cells are text, never markup
        **({"latest_batch_objects": dg.MetadataValue.url(summary.batches[-1]["lakefs"])} if new else {}),
        "stream": stream,
        "summary": dg.MetadataValue.json(summary.to_dict()),  # the next materialization starts here
    })


# Dagster's default automation sensor starts stopped; this one runs from the start, for this asset only.
quarantine_automation = dg.AutomationConditionSensorDefinition(
    "quarantine_automation", target=[lake_quarantine], default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30, description="Materializes lake_quarantine after new ingest batches (eager).")
