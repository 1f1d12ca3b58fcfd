"""The entry points the containers run start natively against the local stack, configured only by
the environment infra/docker-compose.yml gives their service.

Each test writes an infra/.env that points the deployment at the native stack on 127.0.0.1 (the
"managed services" way: only EVCHARGING_* endpoints and credentials change), lets compose-go
resolve the service's environment and command from it, maps the image's paths to temporary
folders, and runs that command with exactly that environment:

- `init` (infra/compose/init.py) creates a fresh Kafka topic pair and finds the MinIO bucket and
  lakeFS repository, twice (idempotent); ClickHouse is skipped (INIT_SKIP) as no server runs here;
- `simulator` (evcharging-sim, the compose command with a tiny synthetic run chosen through the
  SIM_* variables) delivers events into that topic, and its container health check passes;
- `code-location` (dagster code-server) answers the compose health check (`dagster api
  grpc-health-check`), a gRPC ping, and loads in a workspace like infra/workspace.yaml, with its
  instance (infra/dagster.yaml) on a fresh PostgreSQL database of the stack;
- `stream` (python -m evcharging.streaming) starts its Spark query on the topic (local[2]: the
  one setting that differs from the cluster) and stops cleanly on SIGTERM.

Every wait is bounded and every process started here is killed in a finally block.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from evcharging.settings import PROJECT_DIR
from evcharging_tests.deploy.conftest import (
    load_compose, local_command, local_env_values, service_env, write_env)

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


@pytest.fixture(scope="module")
def deployment(stack_settings, compose_tool, tmp_path_factory):
    """The compose project resolved for the local stack, with a fresh topic pair (created by init)."""
    root = tmp_path_factory.mktemp("deploy")
    run = uuid.uuid4().hex[:8]
    values = local_env_values(
        stack_settings,
        EVCHARGING_KAFKA_EVENTS_TOPIC=f"deploy-{run}-events", EVCHARGING_KAFKA_MANIFESTS_TOPIC=f"deploy-{run}-manifests",
        EVCHARGING_KAFKA_EVENTS_PARTITIONS="2", EVCHARGING_STREAM_NAME=f"deploy{run}",
        INIT_SKIP="clickhouse", SIM_SOURCE="synthetic", SIM_VEHICLES="30", SIM_DURATION_HOURS="24", SIM_SPEED="0")
    project = load_compose(compose_tool, write_env(root / ".env", values))
    project["root"], project["settings"] = root, stack_settings
    yield project
    from aiokafka.admin import AIOKafkaAdminClient

    async def drop():
        admin = AIOKafkaAdminClient(bootstrap_servers=stack_settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith(f"deploy-{run}-")]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()

    asyncio.run(asyncio.wait_for(drop(), 60))


def _service(deployment, name: str) -> tuple[list[str], dict[str, str]]:
    svc = deployment["project"]["services"][name]
    env = service_env(deployment, name, deployment["root"] / name, deployment["settings"])
    for key in ("EVCHARGING_DATA_DIR", "DAGSTER_HOME"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return local_command(svc["command"]), env


def _run(argv, env, timeout: float, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=cwd or PROJECT_DIR, capture_output=True, text=True, timeout=timeout)


async def _event_count(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert parts, f"no partitions for {topic}"
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


def test_init_then_simulator(deployment):
    argv, env = _service(deployment, "init")
    first = _run(argv, env, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "topics created: deploy-" in first.stdout, first.stdout
    assert "init clickhouse: skipped" in first.stdout
    again = _run(argv, env, timeout=240)
    assert again.returncode == 0 and "topics exist" in again.stdout and "bucket" in again.stdout, again.stdout

    argv, env = _service(deployment, "simulator")
    assert Path(argv[0]).name == "evcharging-sim" and "--source" in argv
    sim = _run(argv, env, timeout=300)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    topic = env["EVCHARGING_KAFKA_EVENTS_TOPIC"]
    count = asyncio.run(asyncio.wait_for(_event_count(env["EVCHARGING_KAFKA_BOOTSTRAP_SERVERS"], topic), 60))
    assert count > 0, f"the simulator delivered nothing to {topic}"

    check = deployment["project"]["services"]["simulator"]["healthcheck"]["test"][1:]
    health = _run(local_command(check), env, timeout=30)
    assert health.returncode == 0, health.stderr


def test_code_location_serves(deployment, fresh_database, tmp_path, monkeypatch):
    argv, env = _service(deployment, "code-location")
    port = _free_port()
    argv = [str(port) if a == "4000" else a for a in argv]
    env["DAGSTER_POSTGRES_DB"] = fresh_database
    shutil.copyfile(PROJECT_DIR / "infra" / "dagster.yaml", Path(env["DAGSTER_HOME"]) / "dagster.yaml")
    log = tmp_path / "code-location.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=env, cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT)
    try:
        check = deployment["project"]["services"]["code-location"]["healthcheck"]["test"][1:]
        check = local_command([str(port) if a == "4000" else a for a in check])
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, f"the code location exited ({proc.returncode}):\n{_tail(log)}"
            if _run(check, env, timeout=60).returncode == 0:
                break
            assert time.monotonic() < deadline, f"no healthy gRPC server within 240 s:\n{_tail(log)}"
            time.sleep(2)

        from dagster._grpc.client import DagsterGrpcClient

        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        assert client.ping("evcharging")["echo"] == "evcharging"

        # The webserver's view: infra/workspace.yaml with the service name replaced by 127.0.0.1.
        from dagster import DagsterInstance
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import WorkspaceFileTarget

        workspace = tmp_path / "workspace.yaml"
        workspace.write_text((PROJECT_DIR / "infra" / "workspace.yaml").read_text()
                             .replace("host: code-location", "host: 127.0.0.1").replace("port: 4000", f"port: {port}"))
        for key in ("DAGSTER_POSTGRES_HOST", "DAGSTER_POSTGRES_PORT", "DAGSTER_POSTGRES_DB", "EVCHARGING_POSTGRES_USER",
                    "EVCHARGING_POSTGRES_PASSWORD", "EVCHARGING_IMAGE"):
            monkeypatch.setenv(key, env[key])  # the webserver's environment: the same instance
        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance, \
                WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as ctx:
            [entry] = ctx.create_request_context().get_code_location_entries().values()
            assert entry.load_error is None, entry.load_error
            assert entry.code_location.name == "evcharging"
            assert entry.code_location.get_repositories()
    finally:
        _stop(proc)


def test_stream_starts_and_stops(deployment, tmp_path):
    argv, env = _service(deployment, "stream")
    assert argv[1:] == ["-m", "evcharging.streaming"]
    assert env["EVCHARGING_SPARK_MASTER"] == "local[2]"  # the cluster's spark:// URL is the one setting that differs
    topic = env["EVCHARGING_KAFKA_EVENTS_TOPIC"]
    from evcharging.resources.kafka import create_topics  # the stream refuses a missing topic

    asyncio.run(asyncio.wait_for(create_topics(env["EVCHARGING_KAFKA_BOOTSTRAP_SERVERS"], {topic: 2}), 60))
    log = tmp_path / "stream.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=env, cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while f"stream {env['EVCHARGING_STREAM_NAME']}:" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"the stream exited ({proc.returncode}):\n{_tail(log)}"
            assert time.monotonic() < deadline, f"the streaming query did not start within 300 s:\n{_tail(log)}"
            time.sleep(2)
        time.sleep(5)
        assert proc.poll() is None, f"the stream died after starting:\n{_tail(log)}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, f"the stream did not stop cleanly:\n{_tail(log)}"
    finally:
        _stop(proc)
