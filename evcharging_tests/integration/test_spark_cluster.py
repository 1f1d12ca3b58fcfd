"""The stream on a Spark standalone cluster of the stack's own, beside another application.

A master and two workers start through the stack's service classes (free ports, a data directory of
the test's own) and are ready by the master's /json/. A second application holds one core while the
real stream (`python -m evcharging.streaming --available-now`, submitted to the cluster) drains a
small topic into a scratch lakeFS repository: the master shows both RUNNING at once, each with the
configured spark.cores.max, and the lake holds every event exactly once. The executors run the
driver's Python. Afterwards no process of the cluster is left.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evcharging.resources.from_settings import drop_repository, scratch_repository
from evcharging.settings import PROJECT_DIR
from evcharging.stack import spark_cluster, stack
from evcharging.stack.process import port_open, wait_for
from evcharging_tests.integration.test_stream import _assert_exactly_once, produced  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

# A second application: it reports the Python its executors run, then holds its core until stdin closes.
HOLDER = """
import json, sys
from evcharging.settings import load_settings
from evcharging.resources.spark import build_spark_session
spark = build_spark_session(load_settings(), sys.argv[1])
pythons = spark.sparkContext.parallelize(range(4), 2).map(lambda _: __import__("sys").executable).distinct().collect()
print(json.dumps({"executor_pythons": pythons, "driver_python": sys.executable}), flush=True)
sys.stdin.read()
spark.stop()
"""


def _free_ports() -> tuple[int, int]:
    """A master port and a web UI port whose next two ports (the workers' UIs) are free too."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            master, webui = a.getsockname()[1], b.getsockname()[1]
        if master not in range(webui, webui + 3) and not any(port_open("127.0.0.1", p) for p in (webui + 1, webui + 2)):
            return master, webui
    raise AssertionError("no free ports")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _processes_under(folder: Path) -> list[str]:
    """Processes whose working directory is below ``folder`` (master, workers, executors)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(folder):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")[:200].decode(errors="replace")
                found.append(f"{proc.name}: {command}")
        except OSError:
            continue
    return found


def _listeners(port: int) -> list[str]:
    """Processes listening on TCP ``port`` (any address), as "pid: command line"."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name}: {command}")  # whole: a JVM's class comes after its classpath
        except OSError:
            continue
    return found


@pytest.fixture
def cluster(stack_settings, tmp_path):
    """A master and two workers of the stack's own classes, healthy in `stack status`; stopped by
    `stack down` (and checked gone: executors included) afterwards."""
    master_port, webui = _free_ports()
    s = stack_settings.model_copy(update={
        "data_dir": tmp_path / "data", "stack_mode": "cluster", "spark_master": None, "spark_master_port": master_port,
        "spark_master_webui_port": webui, "spark_workers": 2, "spark_worker_cores": 1, "spark_worker_memory": "1g",
        "spark_cores_max": 1})
    services = spark_cluster.cluster_services(s)
    timings: dict[str, float] = {}
    try:
        for svc in services:
            started = time.monotonic()
            assert stack._start(svc, s, progress=print) is not None
            timings[svc.name] = time.monotonic() - started
        state = spark_cluster.wait_until_ready(s, timeout=60)
        rss = {svc.name: _rss_mb(svc.process(s).pid()) for svc in services}
        print(f"[cluster] ready after {timings} s; RSS MB {rss}")
        rows = {row.name: row for row in stack.status(s)}  # the rest of this data dir's stack is not running
        assert [rows[svc.name].state for svc in services] == ["healthy"] * 3
        assert rows["spark"].endpoint.startswith(f"spark://127.0.0.1:{master_port} ")
        yield dict(settings=s, state=state, timings=timings, rss=rss)
    finally:
        stopped = stack.down(s, progress=print)  # what `evcharging stack down` does
    assert sorted(stopped) == ["spark-master", "spark-worker-0", "spark-worker-1"]
    assert _processes_under(s.data_dir) == []
    # The cluster's ports are released. They came free from the ephemeral range, so once released any
    # process may be given one again (CI saw it once): a listener is a failure only if it is a
    # master or a worker.
    for port in (master_port, webui):
        if not wait_for(lambda p=port: not port_open("127.0.0.1", p), 10):
            holders = _listeners(port)
            ours = [h for h in holders if spark_cluster.MASTER_CLASS in h or spark_cluster.WORKER_CLASS in h]
            assert holders and not ours, (port, holders)
            print(f"[cluster] port {port} was released and is now taken by {holders}")


@pytest.mark.timeout(900)
def test_stream_on_the_cluster_beside_another_application(cluster, stack_settings, produced, spark, tmp_path,  # noqa: F811
                                                          unique_name):
    s = cluster["settings"]
    state = cluster["state"]
    assert state["status"] == "ALIVE" and state["aliveworkers"] == 2 and state["cores"] == 2
    assert {w["webuiaddress"].rsplit(":", 1)[1] for w in spark_cluster.alive_workers(state)} == {
        str(spark_cluster.worker_webui_port(s, i)) for i in range(2)}

    lakefs = scratch_repository(stack_settings, f"cluster-{unique_name}")
    lake_settings = stack_settings.model_copy(update={"lakefs_repository": lakefs.repository})
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR), "EVCHARGING_SPARK_MASTER": s.spark_master_url,
           "EVCHARGING_SPARK_CORES_MAX": str(s.spark_cores_max), "EVCHARGING_LAKEFS_REPOSITORY": lakefs.repository}
    holder_name, stream_app = f"holder-{unique_name}", f"evcharging-stream-{produced['stream']}"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, holder_name], env=env, cwd=PROJECT_DIR,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stream = None
    try:
        # Its session is up and has run a job once it reports.
        assert select.select([holder.stdout], [], [], 240)[0], "the second application did not report within 240 s"
        report = json.loads(holder.stdout.readline() or "{}")
        assert report, f"the second application failed (exit {holder.poll()})"
        assert report["executor_pythons"] == [report["driver_python"]] == [sys.executable]

        started, log = time.monotonic(), tmp_path / "stream.log"
        with open(log, "w") as out:  # a file, not a pipe: nothing reads it while the loop below polls
            stream = subprocess.Popen(
                [sys.executable, "-m", "evcharging.streaming", "--available-now", "--stream-name", produced["stream"],
                 "--topic", produced["topic"], "--checkpoint", str(tmp_path / "checkpoint"),
                 "--max-offsets-per-trigger", "70"],
                env=env, cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT)
        side_by_side: list[dict] = []
        while stream.poll() is None:
            assert time.monotonic() - started < 420, "the stream did not drain the topic within 420 s"
            running = {a["name"]: a for a in spark_cluster.running_apps(spark_cluster.master_state(s, timeout=10))}
            if {holder_name, stream_app} <= set(running):
                side_by_side.append(running)
            time.sleep(0.5)
        assert stream.returncode == 0, log.read_text(errors="replace")[-3000:]
        print(f"[cluster] the stream drained the topic in {time.monotonic() - started:.1f} s")
    finally:
        for proc in (stream, holder):
            if proc and proc.poll() is None:
                proc.kill()
        holder.stdin.close()
        holder.wait(120)
    try:
        assert side_by_side, "the stream and the other application never ran at the same time"
        for running in side_by_side:
            assert running[holder_name]["cores"] == running[stream_app]["cores"] == s.spark_cores_max
        finished = lambda: {a["name"]: a["state"] for a in spark_cluster.master_state(s)["completedapps"]}  # noqa: E731
        assert wait_for(lambda: {stream_app, holder_name} <= set(finished()), 30), finished()
        assert finished()[stream_app] == finished()[holder_name] == "FINISHED"
        _assert_exactly_once(spark, lake_settings, produced)
    finally:
        drop_repository(stack_settings, lakefs)
