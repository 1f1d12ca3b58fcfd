"""A blocked batch has a way out, and copies of events never block one (scratch lakeFS repository).

* The operator path: a batch blocked by a station missing from MongoDB is merged once the station
  is added and its partition is materialized again.
* The explicit action: a batch with some offending rows is published without them when the
  partition is materialized with ``publish_without_offending_rows``; they move to quarantine with
  their reason, and the merge commit records the action.
* At-least-once input: exact copies (in the batch and of main's events) are dropped and counted,
  a conflicting copy is quarantined, a newer producer's extra field is rescued; the batch publishes.
* Readings re-sent under new event ids (in the same batch, and in a later one against main) are
  dropped; a reading with other content is quarantined with both event ids in its reason.
* Only batch-level evidence blocks: one bad record of a batch of two publishes (its share is no
  evidence), a batch of thousands with a 30 % bad share blocks, says what to do and is visible as
  unpublished, while the batch behind it publishes; the operator's action then publishes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

import dagster as dg
import pytest

from evcharging.audit.copies import READING_CONFLICT_IN_BATCH, READING_CONFLICT_WITH_MAIN, reason_kind
from evcharging.audit.counts import sum_runs
from evcharging.defs.lake.assets import ingest_batch, lake_main
from evcharging.defs.lake.partitions import ingest_batches
from evcharging.lake.ingest import event_ids_on_main
from evcharging.reference.datasets import STATIONS
from evcharging.streaming.batches import branch_name
from evcharging.warehouse.lineage import merged_batch
from evcharging_tests.factories import T0_MS, session_events
from evcharging_tests.integration.test_wap import lake, materialize_batch, reference, write_batch  # noqa: F401

pytestmark = pytest.mark.integration


def _ids(events: list[bytes]) -> set[str]:
    return {json.loads(e)["event_id"] for e in events}


def _meta(result) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node("ingest_batch")[0].metadata.items()}


def _quarantine(spark, lakefs, run: str) -> list:
    """The quarantined records of main that belong to simulator run ``run``."""
    rows = spark.read.parquet(lakefs.s3a_uri("main", "quarantine/events")).collect()
    return [r for r in rows if json.loads(bytes(r.value)).get("run_id") == run]


def test_operator_paths_for_a_blocked_batch(spark, lake, reference, unique_name):  # noqa: F811
    mongo, stations, models = reference
    repo, instance, stream, run = lake.repo(), dg.DagsterInstance.ephemeral(), f"b{unique_name}", f"run-{unique_name}"

    # Blocked by a station MongoDB does not have; fixed at the source; re-materialized → merged.
    missing = session_events(run, "s1", station_id="EVS77777", vehicle_model_id=models[0])
    write_batch(spark, lake, stream, 0, missing)
    assert not materialize_batch(lake, mongo, branch_name(stream, 0), instance).success

    async def add_station():
        async with mongo.open_database() as db:
            template = await db[STATIONS.collection].find_one({"_id": stations[0]})
            await db[STATIONS.collection].insert_one({**template, "_id": "EVS77777"})

    asyncio.run(add_station())
    again = materialize_batch(lake, mongo, branch_name(stream, 0), instance)
    assert again.success and _meta(again)["status"] == "merged"
    assert _ids(missing) <= event_ids_on_main(lake, ["2026-01-05"])

    # Some rows offend (unknown station): blocked, then published without them by the explicit action.
    good = session_events(run, "s2", station_id=stations[1], vehicle_model_id=models[1])
    bad = session_events(run, "s3", station_id="EVS99999", vehicle_model_id=models[1], start_ms=1767603600000)
    write_batch(spark, lake, stream, 1, good + bad, first_offset=100)
    assert not materialize_batch(lake, mongo, branch_name(stream, 1), instance).success
    action = {"ops": {"ingest_batch": {"config": {"publish_without_offending_rows": True}}}}
    published = materialize_batch(lake, mongo, branch_name(stream, 1), instance, run_config=action)
    assert published.success and _meta(published)["withdrawn_by_operator"] == len(bad)
    on_main = event_ids_on_main(lake, ["2026-01-05"])
    assert _ids(good) <= on_main and not _ids(bad) & on_main
    merge = repo.branch("main").get_commit()
    assert merge.metadata["evcharging.audit.action"] == "publish_without_offending_rows"
    assert merge.metadata["evcharging.audit.withdrawn_rows"] == str(len(bad))
    assert "without 5 offending rows" in merge.message
    quarantined = _quarantine(spark, lake, run)
    assert sorted(json.loads(bytes(r.value))["event_id"] for r in quarantined) == sorted(_ids(bad))
    assert {r.reason for r in quarantined} == {"reference_ids_exist: unknown station_id"}


def test_copies_are_dropped_conflicts_quarantined_and_new_fields_rescued(spark, lake, reference, unique_name):  # noqa: F811
    mongo, stations, models = reference
    repo, instance, stream, run = lake.repo(), dg.DagsterInstance.ephemeral(), f"c{unique_name}", f"run-{unique_name}"
    first = session_events(run, "s1", station_id=stations[0], vehicle_model_id=models[0])
    write_batch(spark, lake, stream, 0, first)
    assert materialize_batch(lake, mongo, branch_name(stream, 0), instance).success

    # The next batch: the first session's events again (2 of them twice), one of them changed, and a
    # new session from a newer producer with an extra field (long enough that the one conflict stays
    # under the quarantine share).
    changed = json.loads(first[4])
    changed["power_kw"] = 99.0
    newer = [json.dumps({**json.loads(e), "contract_version": 2, "firmware": "1.2.3"}).encode()
             for e in session_events(run, "s2", station_id=stations[1], vehicle_model_id=models[1], n=30)]
    values = first[:4] + first[:2] + [json.dumps(changed).encode()] + newer
    write_batch(spark, lake, stream, 1, values, first_offset=100)
    result = materialize_batch(lake, mongo, branch_name(stream, 1), instance)
    assert result.success
    meta = _meta(result)
    assert (meta["duplicates_dropped"], meta["conflicts_quarantined"], meta["rescued_rows"]) == (6, 1, 30)
    merge = repo.branch("main").get_commit()
    assert merge.metadata["evcharging.audit.duplicates_dropped"] == "6"
    assert merge.metadata["evcharging.rescued_rows"] == "30" and merge.metadata["evcharging.rescued_fields"] == '["firmware"]'
    events = spark.read.parquet(lake.s3a_uri("main", "events")).where(f"run_id = '{run}'").collect()
    assert len(events) == len({e.event_id for e in events}) == 35  # each event once
    rescued = {e.session_id: e.rescued_fields for e in events}
    assert json.loads(rescued["s2"]) == {"firmware": "1.2.3"} and rescued["s1"] is None
    [conflict] = _quarantine(spark, lake, run)
    assert conflict.reason == "conflict: event_id already on main with other content"
    assert json.loads(bytes(conflict.value))["power_kw"] == 99.0


def _new_id(raw: bytes, salt: str, **changes) -> bytes:
    """The same reading under a new event id, as a producer that makes new ids on retry sends it
    (with ``changes`` to its content, for a conflicting one)."""
    event = json.loads(raw)
    new_id = hashlib.blake2b(f"{salt}/{event['event_id']}".encode(), digest_size=16).hexdigest()
    return json.dumps({**event, "event_id": new_id, **changes}).encode()


def _balances(lakefs) -> None:
    """Main's newest merge accounts for every Kafka record of its batch: published + quarantined + dropped."""
    batch = merged_batch("head", dict(lakefs.repo().branch("main").get_commit().metadata))
    assert batch.valid_rows + batch.quarantined_rows + batch.dropped_rows == batch.kafka_records, batch


def test_readings_resent_under_new_ids_are_dropped_and_conflicting_ones_quarantined(spark, lake, reference,  # noqa: F811
                                                                                     unique_name):
    mongo, stations, models = reference
    instance, stream, run = dg.DagsterInstance.ephemeral(), f"r{unique_name}", f"run-{unique_name}"
    s1 = session_events(run, "s1", station_id=stations[0], vehicle_model_id=models[0])

    # In one batch of 8 records: two readings again under new ids, one under a new id with other power.
    conflicting = _new_id(s1[3], "retry", power_kw=99.0)
    write_batch(spark, lake, stream, 0, s1 + [_new_id(s1[1], "retry"), _new_id(s1[2], "retry"), conflicting])
    first = materialize_batch(lake, mongo, branch_name(stream, 0), instance)
    assert first.success and _meta(first)["status"] == "merged"
    meta = _meta(first)
    assert (meta["resent_readings_dropped"], meta["reading_conflicts_quarantined"]) == (2, 1)
    assert meta["audit_counts"]["session_sequences_consistent"] == {"quarantined": 1, "dropped": 2, "blocked": 0}
    sequences = {e.check_name: e for e in first.get_asset_check_evaluations()}["session_sequences_consistent"]
    assert sequences.passed and sequences.metadata["dropped_rows"].value == 2
    assert event_ids_on_main(lake, ["2026-01-05"]) == _ids(s1)  # the first arrival of each reading stays
    _balances(lake)

    # A later batch: three of s1's readings under new ids again, one with other energy, and a new session.
    s2 = session_events(run, "s2", station_id=stations[1], vehicle_model_id=models[1])
    against_main = _new_id(s1[4], "later", energy_kwh=55.5)
    write_batch(spark, lake, stream, 1, [_new_id(e, "later") for e in s1[:3]] + [against_main] + s2, first_offset=100)
    later = materialize_batch(lake, mongo, branch_name(stream, 1), instance)
    assert later.success
    assert (_meta(later)["resent_readings_dropped"], _meta(later)["reading_conflicts_quarantined"]) == (3, 1)
    assert event_ids_on_main(lake, ["2026-01-05"]) == _ids(s1) | _ids(s2)
    _balances(lake)

    reasons = {json.loads(bytes(r.value))["event_id"]: r.reason for r in _quarantine(spark, lake, run)}
    assert set(reasons) == _ids([conflicting, against_main])
    in_batch, on_main = reasons[json.loads(conflicting)["event_id"]], reasons[json.loads(against_main)["event_id"]]
    assert reason_kind(in_batch) == READING_CONFLICT_IN_BATCH and json.loads(s1[3])["event_id"] in in_batch
    assert reason_kind(on_main) == READING_CONFLICT_WITH_MAIN and json.loads(s1[4])["event_id"] in on_main
    assert json.loads(against_main)["event_id"] in on_main


def test_one_bad_record_does_not_hold_a_small_batch(spark, lake, reference, unique_name):  # noqa: F811
    """The observed case: two copies of one event, differing in one number, in a micro-batch of their own."""
    mongo, stations, models = reference
    instance, stream, run = dg.DagsterInstance.ephemeral(), f"o{unique_name}", f"run-{unique_name}"
    [event] = session_events(run, "s1", station_id=stations[0], vehicle_model_id=models[0], n=1, end_reason=None)
    write_batch(spark, lake, stream, 0, [event, json.dumps({**json.loads(event), "power_kw": 7.4}).encode()])
    result = materialize_batch(lake, mongo, branch_name(stream, 0), instance)
    assert result.success and _meta(result)["status"] == "merged"
    share = {e.check_name: e for e in result.get_asset_check_evaluations()}["quarantine_share"]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN
    assert "1 of 2 records quarantined" in share.description and "applies from 200 records" in share.description
    assert event_ids_on_main(lake, ["2026-01-05"]) == _ids([event])
    [conflict] = _quarantine(spark, lake, run)
    assert json.loads(bytes(conflict.value))["power_kw"] == 7.4  # the later arrival is the one set aside
    _balances(lake)


def test_a_bad_share_of_thousands_blocks_the_batch_alone_and_the_operator_publishes_it(  # noqa: F811
        spark, lake, reference, unique_name, monkeypatch):
    mongo, stations, models = reference
    repo, instance, stream, run = lake.repo(), dg.DagsterInstance.ephemeral(), f"t{unique_name}", f"run-{unique_name}"
    good = [e for i in range(210) for e in session_events(run, f"s{i:03d}", station_id=stations[i % len(stations)],
                                                          vehicle_model_id=models[i % len(models)], n=10,
                                                          start_ms=T0_MS + i * 1000)]
    bad = [f'{{"not an event": {i}'.encode() for i in range(900)]  # the stream quarantines each record
    write_batch(spark, lake, stream, 0, good[:1000] + bad + good[1000:])
    behind = session_events(run, "behind", station_id=stations[0], vehicle_model_id=models[0])
    write_batch(spark, lake, stream, 1, behind, first_offset=5000)
    blocked_key, behind_key = branch_name(stream, 0), branch_name(stream, 1)

    # One run over both batches, as the sensor launches it: the first blocks, the one behind it publishes.
    instance.add_dynamic_partitions(ingest_batches.name, [blocked_key, behind_key])
    run_over_both = dg.materialize([ingest_batch], instance=instance, raise_on_error=False,
                                   resources={"lakefs": lake, "mongo": mongo},
                                   tags={"dagster/asset_partition_range_start": blocked_key,
                                         "dagster/asset_partition_range_end": behind_key})
    assert not run_over_both.success  # the run is red: a blocking check failed
    meta = _meta(run_over_both)
    assert (meta["merged"], meta["blocked"]) == (1, 1)
    assert meta["audit_counts"]["quarantine_share"]["blocked"] == 1
    assert meta["audit_counts"]["stream"]["quarantined"] == 0  # the blocked batch's records count when it publishes
    share = {e.check_name: e for e in run_over_both.get_asset_check_evaluations()}["quarantine_share"]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.ERROR
    assert "900 of 3000 records quarantined (30.00%" in share.description
    assert "What to do:" in share.description and "publish_without_offending_rows" in share.description
    assert _ids(behind) <= event_ids_on_main(lake, ["2026-01-05"])
    audit = repo.branch(blocked_key).get_commit().metadata  # the reasons stay on the blocked branch too
    assert audit["evcharging.audit.status"] == "failed" and "What to do:" in audit["evcharging.audit.quarantine_share"]
    monkeypatch.setenv("EVCHARGING_STREAM_NAME", stream)
    waiting = dg.materialize([lake_main], instance=instance, resources={"lakefs": lake})
    waiting_meta = waiting.asset_materializations_for_node("lake_main")[0].metadata
    assert waiting_meta["unpublished_batches"].value == 1
    assert waiting_meta["oldest_unpublished_batch"].value == blocked_key

    # The operator read the quarantined records and accepts them: the batch publishes, and says so.
    action = {"ops": {"ingest_batch": {"config": {"publish_without_offending_rows": True}}}}
    published = materialize_batch(lake, mongo, blocked_key, instance, run_config=action)
    assert published.success and _meta(published)["status"] == "merged"
    assert _meta(published)["audit_counts"]["stream"]["quarantined"] == 900
    merge = repo.branch("main").get_commit()
    assert merge.metadata["evcharging.audit.action"] == "publish_without_offending_rows"
    assert merge.metadata["evcharging.audit.withdrawn_rows"] == "0"
    assert event_ids_on_main(lake, ["2026-01-05"]) == _ids(good) | _ids(behind)
    _balances(lake)
    # Summed over the instance's runs (the range run recorded its counts on both partitions): once each.
    total = sum_runs(instance.fetch_materializations(dg.AssetKey("ingest_batch"), limit=100).records)
    assert total["quarantine_share"]["blocked"] == 1 and total["stream"]["quarantined"] == 900
