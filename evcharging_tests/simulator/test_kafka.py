"""Against a real Kafka broker: every event of a run lands in the topic exactly once, in session
order, with the counts the run's manifest states, in the default encoding (Avro); and a run stopped
with Ctrl-C (SIGINT) mid-way flushes what it emitted and publishes a manifest that matches exactly
what is in the topic."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from operator import itemgetter
from pathlib import Path

import pytest

from simulator import avro
from simulator.events import RunManifest, decode as decode_json, validate
from simulator.sink import create_topics

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3


async def _read_all(bootstrap: str, topic: str, partition_count: int) -> list[tuple[int, bytes, bytes]]:
    """Every record of the topic as (partition, key, value), in partition order."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                records += [(tp.partition, m.key, m.value) for m in batch]
        return records
    finally:
        await consumer.stop()


@pytest.fixture
def topics(stack_settings):
    """A fresh events topic and manifests topic for this test only."""
    suffix = uuid.uuid4().hex[:10]
    events, manifests = f"test-sim-events-{suffix}", f"test-sim-manifests-{suffix}"
    asyncio.run(create_topics(stack_settings.kafka_bootstrap_servers, {events: PARTITIONS, manifests: 1}))
    return events, manifests


def _simulator(stack_settings, topics, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS": stack_settings.kafka_bootstrap_servers,
           "EVCHARGING_KAFKA_EVENTS_TOPIC": topics[0], "EVCHARGING_KAFKA_MANIFESTS_TOPIC": topics[1]}
    return subprocess.Popen([sys.executable, "-m", "simulator", "--source", "synthetic", "--sink", "kafka",
                             "--quiet", *args], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)


def _topic_state(stack_settings, topics, run_id: str):
    bootstrap = stack_settings.kafka_bootstrap_servers
    events = asyncio.run(_read_all(bootstrap, topics[0], PARTITIONS))
    manifests = [RunManifest.from_json(value) for _, key, value in asyncio.run(_read_all(bootstrap, topics[1], 1))
                 if key == run_id.encode()]
    assert len(manifests) == 1
    return events, manifests[0]


def _assert_topic_matches_manifest(events, manifest: RunManifest) -> None:
    decoded = [avro.decode_record(value) for _, _, value in events]
    assert all(validate(e) == [] for e in decoded)
    assert len({e["event_id"] for e in decoded}) == len(decoded) == manifest.events_total
    assert dict(Counter(e["event_type"] for e in decoded)) == {k: v for k, v in manifest.counts.items() if v}
    by_session = defaultdict(list)
    for (partition, key, _), event in zip(events, decoded):
        assert key == event["session_id"].encode()
        by_session[key].append((partition, event["seq"]))
    for seqs in by_session.values():  # one partition per session, and its events in order
        assert len({p for p, _ in seqs}) == 1
        assert [s for _, s in seqs] == list(range(len(seqs)))


def test_every_event_lands_exactly_once_with_the_manifest_counts(stack_settings, topics, tmp_path):
    args = ("--vehicles", "300", "--duration", "12", "--seed", "21", "--run-id", f"kafka-{topics[0]}")
    process = _simulator(stack_settings, topics, *args)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    events, manifest = _topic_state(stack_settings, topics, f"kafka-{topics[0]}")
    assert not manifest.interrupted and manifest.sessions_started == manifest.sessions_completed > 0
    _assert_topic_matches_manifest(events, manifest)
    assert manifest.parameters["encoding"] == "avro" and {value[0] for _, _, value in events} == {avro.MAGIC_BYTE}
    # The topic holds exactly the events the same run writes to a file (there in JSON lines).
    out = tmp_path / "same.jsonl"
    replay = subprocess.run([sys.executable, "-m", "simulator", "--source", "synthetic", "--sink", "file", "--quiet",
                             "--out", str(out), *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            timeout=300)
    assert replay.returncode == 0
    by_id = itemgetter("event_id")
    assert sorted((avro.decode_record(value) for _, _, value in events), key=by_id) == \
        sorted((decode_json(line) for line in out.read_bytes().splitlines()), key=by_id)


def test_sigint_mid_run_flushes_and_publishes_a_matching_manifest(stack_settings, topics):
    run_id = f"sigint-{topics[0]}"
    # Paced at 1 simulated hour per wall second, so a week-long run is still going when interrupted.
    process = _simulator(stack_settings, topics, "--vehicles", "2000", "--duration", "168", "--speed", "3600",
                         "--run-id", run_id)
    time.sleep(6)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    events, manifest = _topic_state(stack_settings, topics, run_id)
    assert manifest.interrupted
    assert 0 < manifest.events_total == len(events)
    assert manifest.sessions_completed < manifest.sessions_started  # stopped with sessions in progress
    _assert_topic_matches_manifest(events, manifest)
