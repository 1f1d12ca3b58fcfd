"""The Kafka → lakeFS stream is exactly-once on the real stack.

N events, M of them malformed (one of each kind), produced to a fresh topic end up across the
ingest branches as exactly the N − M valid events, each event id once, plus M quarantined records
with their reasons; the commits' Kafka offset ranges tile each partition with no gap or overlap.
A stream killed with SIGKILL in the middle of a batch and restarted still delivers everything
exactly once, and replaying a committed batch id writes nothing. JSON and Avro records on one topic
(a newer Avro writer's among them) are read alike, and each undecodable Avro record is quarantined.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from evcharging.resources.from_settings import lakefs_resource, minio_s3_client
from evcharging.resources.kafka import create_topics
from evcharging.settings import PROJECT_DIR
from evcharging.streaming.batches import META, TAG_PREFIX, BatchConflictError, IngestBatchWriter, branch_name
from evcharging.streaming.job import StreamOptions, start_query
from evcharging_tests.stream_crash import kill_mid_batch_then_finish
from simulator.avro import AvroSessionEventEncoder, avro_schema, encode, schema_file, schema_text, wire_header
from simulator.avro import decode as decode_avro, decode_record
from simulator.events import SessionEventEncoder

pytestmark = pytest.mark.integration

SESSIONS, EVENTS_PER_SESSION = 40, 8


def _valid_events(run_id: str, avro_every: int = 0) -> list[tuple[bytes, bytes]]:
    """The sessions' events in JSON, or every ``avro_every``-th session's in Avro."""
    out = []
    for s in range(SESSIONS):
        session = f"{run_id}-s{s:03d}"
        encoder = AvroSessionEventEncoder if avro_every and s % avro_every == 0 else SessionEventEncoder
        enc = encoder(run_id, session, "EVS00001", "EVS00001-1", f"V{s:06d}", "tesla-model-3", "CCS", 0.0)
        for seq in range(EVENTS_PER_SESSION):
            kind = "session_started" if seq == 0 else "session_ended" if seq == EVENTS_PER_SESSION - 1 else "charging_progress"
            out.append((session.encode(), enc.encode(kind, seq, 1767600000000 + seq * 60000, 11.0, seq * 0.18, 20.0 + seq,
                                                     "target_soc" if kind == "session_ended" else None)))
    return out


def _malformed(run_id: str) -> list[tuple[bytes, bytes]]:
    good = json.loads(_valid_events(run_id)[1][1])
    wrong_type = {**good, "power_kw": "11.0", "event_id": "wrong-type"}
    unknown_type = {**good, "event_type": "session_paused", "event_id": "unknown-type"}
    missing_id = {k: v for k, v in good.items() if k != "event_id"}
    missing_session = {**{k: v for k, v in good.items() if k != "session_id"}, "event_id": "no-session"}
    return [(b"bad", b'{"event_id": "truncated'), (b"bad", b"not json at all")] + [
        (b"bad", json.dumps(e).encode()) for e in (wrong_type, unknown_type, missing_id, missing_session)]


async def _produce_topic(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], partitions: int = 3):
    from aiokafka import AIOKafkaProducer

    await create_topics(bootstrap, {topic: partitions})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.fixture
def produced(stack_settings, unique_name):
    """A fresh topic with the valid events and the malformed records interleaved."""
    run_id = f"run-{unique_name}"
    valid, bad = _valid_events(run_id), _malformed(run_id)
    records = valid[:100] + bad[:3] + valid[100:] + bad[3:]
    topic = f"stream-{unique_name}"
    asyncio.run(_produce_topic(stack_settings.kafka_bootstrap_servers, topic, records))
    return dict(topic=topic, run_id=run_id, valid=valid, bad=bad, stream=f"t{unique_name}")


def _end_offsets(bootstrap: str, topic: str) -> dict[str, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def ends():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
            if not parts:
                await consumer._client.force_metadata_update()
                parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            return {str(tp.partition): off for tp, off in (await consumer.end_offsets(parts)).items()}
        finally:
            await consumer.stop()

    return asyncio.run(ends())


def _event_id(value: bytes) -> str:
    return decode_record(value, produced_schemas())["event_id"]


def _newer_writer_schema() -> dict:
    """Contract version 2 as a newer producer would write it: one field more, in the middle."""
    schema = avro_schema(1)
    schema["fields"].insert(5, {"name": "firmware", "type": ["null", "string"], "default": None})
    return schema


def produced_schemas() -> dict:
    from simulator.avro import load_schemas

    return {**load_schemas(), 2: _newer_writer_schema()}


def _avro_cases(run_id: str) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """(a newer writer's valid record, the four kinds of undecodable Avro record)."""
    good = AvroSessionEventEncoder(run_id, f"{run_id}-x", "EVS00001", "EVS00001-1", "V9", "tesla-model-3", "CCS", 0.0) \
        .encode("session_started", 0, 1767600000000, 11.0, 0.0, 20.0)
    newer = encode({**decode_avro(good), "contract_version": 2, "firmware": "2.1"}, 2, _newer_writer_schema())
    bad = [b"\x07" + good[1:], wire_header(99) + good[5:], good[:-4], good + b"\x00\x01"]
    return [(b"newer", newer)], [(b"bad-avro", v) for v in bad]


def _lake_contents(spark, settings, produced) -> tuple[list[str], list, list[dict]]:
    """(valid event ids, quarantined rows, commit metadata) across the stream's ingest tags."""
    lakefs = lakefs_resource(settings)
    repo = lakefs.repo()
    tags = list(repo.tags(prefix=f"{TAG_PREFIX}{produced['stream']}-"))
    metas = [t.get_commit().metadata for t in tags]
    ids, quarantined = [], []
    for tag in tags:
        branch = branch_name(produced["stream"], int(tag.id.rsplit("-", 1)[1]))
        ids += [r.event_id for r in spark.read.parquet(lakefs.s3a_uri(branch, "events"))
                .where(f"run_id = '{produced['run_id']}'").select("event_id").collect()]
        diff = [c.path for c in repo.branch("main").diff(other_ref=branch, prefix="quarantine/")]
        if diff:
            quarantined += (spark.read.parquet(lakefs.s3a_uri(branch, "quarantine/events"))
                            .where(f"kafka_topic = '{produced['topic']}'").collect())
    return ids, quarantined, metas


def _assert_exactly_once(spark, settings, produced):
    ids, quarantined, metas = _lake_contents(spark, settings, produced)
    expected = sorted(_event_id(v) for _, v in produced["valid"])
    assert len(ids) == len(set(ids)), "an event id landed twice"
    assert sorted(ids) == expected
    assert sorted(bytes(r.value) for r in quarantined) == sorted(v for _, v in produced["bad"])
    assert all(r.reason for r in quarantined)
    assert sum(int(m[f"{META}valid_rows"]) for m in metas) == len(expected)
    assert sum(int(m[f"{META}quarantined_rows"]) for m in metas) == len(produced["bad"])
    # Offset ranges tile every partition from 0 to its end: no gap, no overlap.
    ranges: dict[str, list[list[int]]] = {}
    for m in metas:
        for part, rng in json.loads(m[f"{META}kafka_offsets"]).items():
            ranges.setdefault(part, []).append(rng)
    ends = _end_offsets(settings.kafka_bootstrap_servers, produced["topic"])
    for part, end in ends.items():
        spans = sorted(ranges.get(part, []))
        position = 0
        for lo, hi in spans:
            assert lo == position, (part, spans)
            position = hi
        assert position == end, (part, spans, end)
    return metas


def _drain_exactly_once(spark, settings, produced, checkpoint, max_offsets: int) -> list[dict]:
    """Run the stream over the whole topic, then check the lake (returns the commits' metadata)."""
    options = StreamOptions.from_settings(settings, stream_name=produced["stream"], topic=produced["topic"],
                                          checkpoint=checkpoint, max_offsets_per_trigger=max_offsets, available_now=True)
    query = start_query(spark, settings, options)
    assert query.awaitTermination(300), "the stream did not drain the topic within 300 s"
    assert query.exception() is None
    return _assert_exactly_once(spark, settings, produced)


def test_stream_writes_every_event_exactly_once_with_quarantine(spark, stack_settings, produced, tmp_path):
    metas = _drain_exactly_once(spark, stack_settings, produced, tmp_path / "checkpoint", 70)
    assert len(metas) >= 4  # 326 records at ≤ 70 per trigger
    assert {m[f"{META}contract_version"] for m in metas} == {"1"}

    # Replaying a committed batch id writes nothing: same commit, no new tag.
    lakefs = lakefs_resource(stack_settings)
    first = metas[0]
    batch_id = int(first[f"{META}batch_id"])
    branch = lakefs.repo().branch(branch_name(produced["stream"], batch_id))
    head = branch.get_commit().id
    offsets = json.loads(first[f"{META}kafka_offsets"])
    records = (spark.read.format("kafka").option("kafka.bootstrap.servers", stack_settings.kafka_bootstrap_servers)
               .option("subscribe", produced["topic"])
               .option("startingOffsets", json.dumps({produced["topic"]: {p: lo for p, (lo, hi) in offsets.items()}}))
               .option("endingOffsets", json.dumps({produced["topic"]: {p: hi for p, (lo, hi) in offsets.items()}}))
               .load())
    writer = IngestBatchWriter(lakefs, produced["stream"], produced["topic"])
    tags_before = len(list(lakefs.repo().tags(prefix=f"{TAG_PREFIX}{produced['stream']}-")))
    result = writer.write(records, batch_id)
    assert result.replayed and result.commit_id == head
    assert branch.get_commit().id == head
    assert len(list(lakefs.repo().tags(prefix=f"{TAG_PREFIX}{produced['stream']}-"))) == tags_before
    # The same batch id with other offsets is a conflict, never a silent skip or a second write.
    with pytest.raises(BatchConflictError, match="was the checkpoint reset"):
        writer.write(records.where("offset > 0"), batch_id)


@pytest.mark.parametrize("where", ["folder", "object storage"])
def test_stream_killed_mid_batch_resumes_exactly_once(spark, stack_settings, produced, tmp_path, where):
    """The checkpoint in a local folder, or in MinIO's checkpoint bucket (s3a://, read and written
    through Hadoop's FileSystem, like the offset log the stream reads each batch's offsets from)."""
    checkpoint = (str(tmp_path / "checkpoint") if where == "folder"
                  else f"s3a://{stack_settings.minio_checkpoint_bucket}/tests/{produced['stream']}")
    java = kill_mid_batch_then_finish(lakefs_resource(stack_settings).repo(), produced["stream"], [
        "--stream-name", produced["stream"], "--topic", produced["topic"], "--checkpoint", checkpoint,
        "--max-offsets-per-trigger", "40"])
    # A local driver's heap is committed at start, so its RSS does not creep up for hours; a
    # cluster's driver only plans and keeps a lazily grown heap.
    heap = stack_settings.spark_driver_memory
    touched = {f"-Xms{heap}", "-XX:+AlwaysPreTouch"}
    if stack_settings.spark_is_local:
        assert touched | {f"-Xmx{heap}"} <= set(java), java
    else:
        assert f"-Xmx{heap}" in java and not touched & set(java), java
    _assert_exactly_once(spark, stack_settings, produced)
    if where == "object storage":  # Spark's offset log is in the bucket, and nothing on this disk
        keys = [o["Key"] for o in minio_s3_client(stack_settings).list_objects_v2(
            Bucket=stack_settings.minio_checkpoint_bucket, Prefix=f"tests/{produced['stream']}/offsets/")["Contents"]]
        assert len(keys) >= 3, keys
        assert not (tmp_path / "checkpoint").exists()


def test_stream_waits_for_an_unreachable_kafka_then_fails_clearly(tmp_path):
    env = {**os.environ, "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "EVCHARGING_STREAM_OUTAGE_WINDOW_SECONDS": "4"}
    result = subprocess.run([sys.executable, "-m", "evcharging.streaming", "--available-now",
                             "--checkpoint", str(tmp_path)], env=env, cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "stream: Kafka at EVCHARGING_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1 has been unreachable" in result.stderr
    assert "EVCHARGING_STREAM_OUTAGE_WINDOW_SECONDS=4" in result.stderr and "Traceback" not in result.stderr
    attempts = [line for line in result.stderr.splitlines() if "is unreachable (attempt" in line]
    assert len(attempts) >= 2, result.stderr  # one line per attempt, backing off


def test_json_and_avro_on_one_topic_exactly_once_with_avro_quarantine(spark, stack_settings, unique_name, tmp_path):
    run_id = f"run-{unique_name}"
    newer, bad_avro = _avro_cases(run_id)
    valid, bad = _valid_events(run_id, avro_every=2) + newer, _malformed(run_id) + bad_avro
    produced = dict(topic=f"mixed-{unique_name}", run_id=run_id, valid=valid, bad=bad, stream=f"m{unique_name}")
    asyncio.run(_produce_topic(stack_settings.kafka_bootstrap_servers, produced["topic"],
                               valid[:150] + bad[:5] + valid[150:] + bad[5:]))
    schemas = tmp_path / "schemas"  # the newer writer's schema, where a registry would serve it from
    schemas.mkdir()
    schema_file(2, schemas).write_text(schema_text(_newer_writer_schema()))
    settings = stack_settings.model_copy(update={"avro_schemas_dir": schemas})
    metas = _drain_exactly_once(spark, settings, produced, tmp_path / "checkpoint", 100)
    assert sum(json.loads(m[f"{META}rescued_fields"]) == ["firmware"] for m in metas) == 1
    _, quarantined, _ = _lake_contents(spark, settings, produced)
    reasons = {bytes(r.value): r.reason for r in quarantined}
    expected = ["unknown magic byte 0x07", "unknown Avro schema id 99", "is truncated or not of that schema",
                "bytes are left after its last field"]
    for (_, value), reason in zip(bad_avro, expected, strict=True):
        assert reason in reasons[value], (reason, reasons[value])
