"""Faults on the cluster: a Spark worker, a Kafka broker and the stream's driver, each SIGKILLed.

The stack's cluster mode, started with its own service classes on free ports in a data directory of
the test's own: three KRaft Kafka nodes (topics replicated 3 times, ``min.insync.replicas`` 2) and a
Spark standalone master with two one-core workers; lakeFS, MinIO and FerretDB are the shared stack's.
The real stream (``python -m evcharging.streaming``) is submitted to the master with
``spark.cores.max`` 2, so it has an executor on each worker, and keeps its checkpoint in MinIO's
checkpoint bucket (s3a://). Dagster publishes throughout (the commit sensor and its publish runs, in
process, as in ``test_faults``). Each fault has a simulated run of its own, part of it sent twice:

* **worker**: the worker hosting one of the stream's executors is SIGKILLed (its process group: the
  executor dies with it, as with a lost machine) while a batch is in flight; the batch's tasks run
  on the other worker's executor; the worker is started again afterwards;
* **broker**: the leader of the events topic's partition 0 is SIGKILLed while the producer is
  sending (acks=all, idempotent): the producer and the stream go on with the other two brokers; the
  broker is started again afterwards;
* **driver**: the stream's driver (its Python and its JVM) is SIGKILLed mid-batch and started again:
  it resumes from the checkpoint on object storage.

Each ends exact on main and in ClickHouse (counted without FINAL), reconciled by the product's own
check. Per fault the test reports the time to recover (SIGKILL → the stream's next ingest commit) and
the longest freshness gap (the longest time without an ingest commit while the run's records waited
in Kafka), printed and written to ``bench/results/cluster-faults.json`` (git-ignored).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from evcharging.definitions import defs
from evcharging.resources.from_settings import drop_repository, minio_s3_client, resources, scratch_repository
from evcharging.resources.kafka import topic_partitions
from evcharging.settings import PROJECT_DIR, load_settings
from evcharging.stack import spark_cluster, stack
from evcharging.stack.process import port_open, wait_for
from evcharging.stack.services import kafka_services
from evcharging.warehouse.tables import markdown_table
from evcharging_tests.integration.test_faults import (
    RESENT, Publisher, _clickhouse_events, _kill_group, _main_events, _manifest, _publish_manifest, _publish_until,
    _run_records, _stream_position, _wait_for_batch_in_flight)
from evcharging_tests.integration.test_stream import _end_offsets
from evcharging_tests.integration.test_wap import reference  # noqa: F401

pytestmark = pytest.mark.integration

FAULTS = ("worker", "broker", "driver")
DOWN_S = 5  # how long a killed worker or broker stays down before the stack starts it again
PARTITIONS = 4


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def _free_run(taken: set[int], length: int, step: int) -> int:
    """A port p with p, p + step … free (the brokers' controller ports: the setting + 2·i)."""
    for _ in range(200):
        base = _free_port(taken)
        ports = [base + step * i for i in range(length)]
        if all(p < 65536 and p not in taken and not port_open("127.0.0.1", p) for p in ports[1:]):
            taken.update(ports)
            return base
    raise AssertionError("no free run of ports")


@pytest.fixture
def cluster(stack_settings, reference, unique_name, tmp_path, monkeypatch):  # noqa: F811
    """The cluster (three brokers, a master and two workers) and the settings of a pipeline of the
    test's own on it; the process environment is set so the stream and the runs use them."""
    mongo, stations, models = reference
    taken: set[int] = set()
    brokers = ",".join(f"127.0.0.1:{_free_port(taken)}" for _ in range(3))
    controller, master = _free_run(taken, 3, 2), _free_port(taken)
    webui = _free_run(taken, 3, 1)  # the master's UI, then each worker's
    lakefs = scratch_repository(stack_settings, f"clfaults-{unique_name}")
    env = {"EVCHARGING_KAFKA_BOOTSTRAP_SERVERS": brokers, "EVCHARGING_KAFKA_CONTROLLER_PORT": str(controller),
           "EVCHARGING_KAFKA_EVENTS_TOPIC": f"clfaults-{unique_name}", "EVCHARGING_KAFKA_EVENTS_PARTITIONS": str(PARTITIONS),
           "EVCHARGING_KAFKA_MANIFESTS_TOPIC": f"clfaults-manifests-{unique_name}",
           "EVCHARGING_LAKEFS_REPOSITORY": lakefs.repository, "EVCHARGING_MONGO_DATABASE": mongo.database,
           "EVCHARGING_STREAM_NAME": f"c{unique_name}", "EVCHARGING_CHDB_PATH": str(tmp_path / "chdb"),
           "EVCHARGING_SPARK_CHECKPOINT_DIR": f"s3a://{stack_settings.minio_checkpoint_bucket}/tests/c{unique_name}",
           "EVCHARGING_STACK_MODE": "cluster", "EVCHARGING_SPARK_MASTER_PORT": str(master),
           "EVCHARGING_SPARK_MASTER_WEBUI_PORT": str(webui), "EVCHARGING_SPARK_WORKERS": "2",
           "EVCHARGING_SPARK_CORES_MAX": "2", "EVCHARGING_STREAM_TRIGGER_SECONDS": "2",
           "EVCHARGING_STREAM_MAX_OFFSETS_PER_TRIGGER": "400"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    # The cluster's processes keep their logs, pids and data under the test's folder, not the stack's.
    local = settings.model_copy(update={"data_dir": tmp_path / "data"})
    services = kafka_services(local) + spark_cluster.cluster_services(local)
    try:
        started = time.monotonic()
        for svc in services:
            assert stack._start(svc, local, progress=print) is not None
        for svc in services:
            assert wait_for(lambda: svc.healthy(local), timeout=120), f"{svc.name} is not healthy"
        spark_cluster.wait_until_ready(local, timeout=90)
        print(f"[cluster] three brokers, a master and two workers ready in {time.monotonic() - started:.1f} s")
        asyncio.run(resources(settings)["kafka"].ensure_topics())
        yield settings, local, stations, models
    finally:
        stack.down(local, progress=print)
        drop_repository(stack_settings, lakefs)
        s3 = minio_s3_client(stack_settings)
        prefix = f"tests/c{unique_name}/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack_settings.minio_checkpoint_bucket,
                                                                 Prefix=prefix):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=stack_settings.minio_checkpoint_bucket, Key=obj["Key"])


def _start_stream(log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evcharging.streaming"], cwd=PROJECT_DIR, env=os.environ.copy(),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


async def _produce_paced(bootstrap: str, topic: str, records, chunks: int, pause_s: float, midway=None) -> None:
    """Send ``records`` in ``chunks`` with pauses (acks=all, idempotent), calling ``midway`` halfway."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                request_timeout_ms=60_000)
    await producer.start()
    try:
        size = -(-len(records) // chunks)
        for i in range(chunks):
            for key, value in records[i * size:(i + 1) * size]:
                await producer.send(topic, key=key, value=value)
            await producer.flush()
            if midway and i == chunks // 2 - 1:
                await asyncio.get_running_loop().run_in_executor(None, midway)
            await asyncio.sleep(pause_s)
    finally:
        await producer.stop()


class CommitClock:
    """When the stream's ingest commits appear (polled), for recovery times and freshness gaps."""

    def __init__(self, settings):
        self.settings, self.times = settings, []
        self.batches = _stream_position(settings)[1]

    def poll(self) -> None:
        batches = _stream_position(self.settings)[1]
        if batches > self.batches:
            self.times.append(time.monotonic())
            self.batches = batches

    def recovery(self, killed: float) -> float:
        return round(min(t for t in self.times if t > killed) - killed, 1)

    def longest_gap(self, since: float, until: float) -> float:
        marks = [since, *[t for t in self.times if since < t <= until], until]
        return round(max(b - a for a, b in zip(marks, marks[1:])), 1)


def _executors_of(local, index: int) -> list[str]:
    """The application names of the executors worker ``index`` runs (its web UI's /json/)."""
    url = f"http://127.0.0.1:{spark_cluster.worker_webui_port(local, index)}/json/"
    with urllib.request.urlopen(url, timeout=10) as resp:
        state = json.load(resp)
    return [e.get("appdesc", {}).get("name", e.get("appid", "")) for e in state.get("executors", [])]


def _partitions(settings, *topics: str) -> dict[str, list[dict]]:
    return asyncio.run(topic_partitions(settings.kafka_bootstrap_servers, list(topics)))


@pytest.mark.timeout(1800)
def test_worker_broker_and_driver_killed_on_the_cluster_lose_nothing_and_double_nothing(cluster, tmp_path):
    settings, local, stations, models = cluster
    partitions = _partitions(settings, settings.kafka_events_topic, settings.kafka_manifests_topic)
    assert all(len(p["replicas"]) == 3 for parts in partitions.values() for p in parts), partitions  # manifests too
    publisher, clock = Publisher(settings), CommitClock(settings)
    log_path = tmp_path / "stream.log"
    log = open(log_path, "wb")
    stream = _start_stream(log)
    produced, batch, figures, manifests = 0, -1, {}, {}
    try:
        for hour, fault in enumerate(FAULTS):
            run = f"clfaults-{settings.stream_name}-{fault}"
            records = _run_records(run, stations, models, hour)
            sent = records + records[:RESENT]
            before = _end_offsets(settings.kafka_bootstrap_servers, settings.kafka_events_topic)
            window_start, killed, down = time.monotonic(), None, {}

            if fault == "broker":
                leader = _partitions(settings, settings.kafka_events_topic)[settings.kafka_events_topic][0]["leader"]
                broker = next(svc for svc in kafka_services(local) if svc.node == leader - 1)

                def kill_broker():
                    nonlocal killed
                    _kill_group(broker.process(local).pid())
                    killed = time.monotonic()

                asyncio.run(_produce_paced(settings.kafka_bootstrap_servers, settings.kafka_events_topic, sent,
                                           chunks=10, pause_s=1.0, midway=kill_broker))
                down = {"service": broker.name, "svc": broker}
            else:
                asyncio.run(_produce_paced(settings.kafka_bootstrap_servers, settings.kafka_events_topic, sent,
                                           chunks=1, pause_s=0))
                publisher.tick()
                batch = _wait_for_batch_in_flight(settings, stream, log_path, after=batch)
                if fault == "worker":
                    state = spark_cluster.master_state(local)
                    worker = spark_cluster.cluster_services(local)[2]  # spark-worker-1
                    assert len(spark_cluster.alive_workers(state)) == 2, state
                    hosted = _executors_of(local, worker.index)
                    assert any(app.startswith("evcharging-stream-") for app in hosted), \
                        f"spark-worker-1 runs no executor of the stream: {hosted}"
                    _kill_group(worker.process(local).pid())
                    killed = time.monotonic()
                    down = {"service": worker.name, "svc": worker}
                else:  # the driver: its Python and its JVM, then a new one from the checkpoint
                    _kill_group(stream.pid)
                    killed = time.monotonic()
                    stream = _start_stream(log)
            produced += len(sent)
            after = _end_offsets(settings.kafka_bootstrap_servers, settings.kafka_events_topic)

            restarted_at = killed + DOWN_S if down else None
            deadline = time.monotonic() + 300
            while _stream_position(settings)[0] < produced or restarted_at:
                assert time.monotonic() < deadline, f"{fault}: not caught up in 300 s: {_stream_position(settings)}"
                assert stream.poll() is None, f"the stream exited after the {fault} fault:\n" \
                                              f"{log_path.read_text(errors='replace')[-3000:]}"
                if restarted_at and time.monotonic() >= restarted_at:  # the machine comes back
                    assert stack._start(down["svc"], local, progress=print) is not None
                    restarted_at = None
                clock.poll()
                publisher.tick()
                time.sleep(0.5)
            caught_up = time.monotonic()
            _publish_until(publisher, settings, produced, timeout=300)
            manifests[fault] = _manifest(run, records, {p: end - 1 for p, end in after.items()
                                                        if end > before.get(p, 0)})
            asyncio.run(_publish_manifest(settings, manifests[fault]))
            figures[fault] = {"run_id": run, "killed": down.get("service", "stream driver"), "events_sent": len(sent),
                              "recovery_s": clock.recovery(killed),
                              "longest_gap_s": clock.longest_gap(window_start, caught_up)}
            print(f"[cluster faults] {fault}: {figures[fault]}", flush=True)
        # Everything came back: three brokers and two workers.
        for svc in kafka_services(local):
            assert wait_for(lambda: svc.healthy(local), timeout=120), f"{svc.name} did not rejoin"
        spark_cluster.wait_until_ready(local, timeout=90)
    finally:
        stream.send_signal(signal.SIGTERM)
        stream.wait(120)
        log.close()
    output = log_path.read_text(errors="replace")
    assert "Traceback" not in output, output[-3000:]

    # The warehouse as the sensors would bring it up to date, then the product's reconciliation.
    definitions = defs()
    try:
        for job in ("refresh_lake_main", "refresh_sessions", "reconcile_warehouse"):
            result = definitions.resolve_job_def(job).execute_in_process(instance=publisher.instance,
                                                                         raise_on_error=False)
            assert result.success, job
    finally:
        _stop_a_session_on(local.spark_master_url)
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "reconciliation"]
    for row in figures.values():
        row["events_on_main"], _ = _main_events(settings, row["run_id"])
        row["events_in_clickhouse"], row["distinct_in_clickhouse"] = _clickhouse_events(settings, row["run_id"])
    _report(figures)

    assert check.passed and check.metadata["runs_checked"].value == len(FAULTS), check.description
    assert publisher.failed_runs == [], publisher.failed_runs  # no service of the publish path was killed
    for fault, row in figures.items():
        unique = manifests[fault].events_total
        assert row["events_on_main"] == unique == row["events_sent"] - RESENT, (fault, row)
        assert row["events_in_clickhouse"] == row["distinct_in_clickhouse"] == unique, (fault, row)
    # The driver came back from the checkpoint on object storage: the new driver's first batch goes on
    # from the old one's batch ids instead of starting the topic over at batch 0.
    starts = [m.end() for m in re.finditer(rf"stream {settings.stream_name}: .* checkpoint s3a://", output)]
    assert len(starts) == 2, output[-3000:]
    first_after = re.search(r"batch (\d+) (→|was already committed|is empty)", output[starts[1]:])
    assert first_after and int(first_after.group(1)) > 0, output[starts[1]:][:3000]


def _stop_a_session_on(master: str) -> None:
    """The sessions pass starts this process's SparkSession on the cluster unless the test session
    already had one (getOrCreate): stop it before the cluster goes, or later tests would get a
    session whose master is gone."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and active.sparkContext.master == master:
        active.stop()


def _report(figures: dict[str, dict]) -> None:
    columns = ["fault", "killed", "recovery s", "longest freshness gap s", "events sent", "events on main",
               "events in ClickHouse"]
    rows = [[f, r["killed"], r["recovery_s"], r["longest_gap_s"], r["events_sent"], r["events_on_main"],
             r["events_in_clickhouse"]] for f, r in figures.items()]
    print("\n" + markdown_table(columns, rows))
    results = PROJECT_DIR / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "cluster-faults.json").write_text(json.dumps({"cluster_faults": figures}, indent=2))
