"""The stack's failure paths give one clear message and leave nothing running.

A second, throw-away stack (own data directory, own ports) is started beside the session's stack:
once with its Kafka port colliding with a port already in use, which must fail naming Kafka, the
port and the log, with every service it had started stopped again; once cleanly, after which
`down` must leave no process of it alive. A missing or invalid setting names the variable to set.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from evcharging.settings import load_settings
from evcharging.stack import stack
from evcharging.stack.process import StackError, port_open
from evcharging.resources.from_settings import lakefs_resource

pytestmark = pytest.mark.integration

SECOND_STACK_PORTS = dict(
    postgres_port=55329, mongo_url="mongodb://127.0.0.1:27117/", minio_endpoint="http://127.0.0.1:19000",
    minio_console_port=19001, lakefs_endpoint="http://127.0.0.1:18000",
    kafka_bootstrap_servers="127.0.0.1:19192", kafka_controller_port=19193,
)


@pytest.fixture
def second_stack(tmp_path):
    """Settings of a throw-away stack; its PostgreSQL cluster is removed afterwards wherever it lives."""
    settings = load_settings(data_dir=tmp_path / "second-stack", **SECOND_STACK_PORTS)
    yield settings
    stack.down(settings, progress=lambda msg: None)
    pg_home = settings.data_dir / "postgres"
    if pg_home.is_symlink():  # as root the cluster lives in postgres's home (see PostgresService)
        shutil.rmtree(pg_home.resolve(), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_port_taken_fails_clearly_and_stops_what_it_started(stack_settings, second_stack):
    settings = second_stack
    with socket.socket() as squatter:  # a process this stack did not start holds Kafka's port
        squatter.bind(("127.0.0.1", 19192))
        squatter.listen()
        with pytest.raises(StackError) as failure:
            stack.up(settings, progress=lambda msg: None)
    message = str(failure.value)
    assert failure.value.service == "kafka"
    assert "port 19192 on 127.0.0.1 is already taken" in message
    assert "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS" in message
    assert str(settings.logs_dir / "kafka.log") in message
    # Everything started before Kafka (postgres, ferretdb, minio, lakefs) was stopped again.
    assert [svc.name for svc in stack.services(settings) if svc.process(settings).running()] == []
    for port in (55329, 27117, 19000, 18000):
        assert not port_open("127.0.0.1", port), port


def test_up_is_idempotent_and_down_leaves_nothing_running(stack_settings, second_stack):
    settings = second_stack
    try:
        rows = stack.up(settings, progress=lambda msg: None)
        assert all(r.ok for r in rows), rows
        pids = {svc.name: svc.process(settings).pid() for svc in stack.services(settings)}
        assert all(pids.values()), pids
        # A second `up` starts nothing new and keeps the same processes.
        stack.up(settings, progress=lambda msg: None)
        assert {svc.name: svc.process(settings).pid() for svc in stack.services(settings)} == pids
        # The second stack's lakeFS has its own repository, reachable with the same code.
        assert lakefs_resource(settings).repo().properties.id == settings.lakefs_repository
    finally:
        stopped = stack.down(settings, progress=lambda msg: None)
    assert sorted(stopped) == sorted(pids)
    assert [name for name, pid in pids.items() if _alive(pid)] == []
    assert [svc.name for svc in stack.services(settings) if svc.process(settings).running()] == []
    # The session's own stack was not touched.
    assert all(r.ok for r in stack.status(stack_settings) if r.name in pids)


def test_missing_secret_names_the_variable(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("EVCHARGING_") and name.endswith(("_KEY", "_KEY_ID", "_PASSWORD", "_SECRET")):
            monkeypatch.delenv(name)
    settings = load_settings(data_dir=tmp_path / "no-secrets")
    with pytest.raises(Exception) as failure:
        lakefs_resource(settings)
    assert "EVCHARGING_LAKEFS_ACCESS_KEY_ID is not set" in str(failure.value)
    assert "evcharging stack up" in str(failure.value)


def test_invalid_setting_gives_one_clear_cli_error(tmp_path):
    env = {**os.environ, "EVCHARGING_DATA_DIR": str(tmp_path), "EVCHARGING_POSTGRES_PORT": "five"}
    result = subprocess.run([sys.executable, "-m", "evcharging.cli", "stack", "status"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "invalid setting EVCHARGING_POSTGRES_PORT='five'" in result.stderr
    assert "Traceback" not in result.stderr
