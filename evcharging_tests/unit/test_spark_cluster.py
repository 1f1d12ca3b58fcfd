"""The Spark standalone cluster's pure parts: the master URL the stack mode implies, the Spark config
on a spark:// master against local, readiness read from a sample of the master's /json/ (served
over HTTP, as the master serves it), and which services the stack starts and stops in each mode."""

from __future__ import annotations

import http.server
import json
import sys
import threading

import pytest

from evcharging.resources.from_settings import spark_resource
from evcharging.resources.spark import long_lived_driver, spark_config
from evcharging.settings import Settings
from evcharging.stack import spark_cluster, stack
from evcharging.stack.services import SERVICES

# What a Spark 4 master answers on /json/ with two workers and two running applications (trimmed).
MASTER_JSON = {
    "url": "spark://127.0.0.1:7077", "aliveworkers": 2, "cores": 2, "coresused": 2, "memory": 2048,
    "status": "ALIVE",
    "workers": [
        {"id": "worker-1", "host": "127.0.0.1", "port": 40001, "webuiaddress": "http://127.0.0.1:8081",
         "cores": 1, "coresused": 1, "state": "ALIVE"},
        {"id": "worker-2", "host": "127.0.0.1", "port": 40002, "webuiaddress": "http://127.0.0.1:8082",
         "cores": 1, "coresused": 1, "state": "ALIVE"},
        {"id": "worker-0", "host": "127.0.0.1", "port": 40000, "webuiaddress": "http://127.0.0.1:8083",
         "cores": 1, "coresused": 0, "state": "DEAD"},
    ],
    "activeapps": [
        {"id": "app-1", "name": "evcharging-stream-events", "cores": 1, "state": "RUNNING"},
        {"id": "app-2", "name": "evcharging-sessions", "cores": 1, "state": "RUNNING"},
        {"id": "app-3", "name": "queued", "cores": 0, "state": "WAITING"},
    ],
    "completedapps": [],
}


def _settings(tmp_path, **overrides) -> Settings:
    return Settings(data_dir=tmp_path, **overrides)


def test_the_master_follows_the_mode_and_an_explicit_master_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("EVCHARGING_SPARK_MASTER", raising=False)
    monkeypatch.delenv("EVCHARGING_STACK_MODE", raising=False)
    assert _settings(tmp_path).spark_master_url == "local[2]"
    assert _settings(tmp_path, stack_mode="cluster", spark_master_port=7199).spark_master_url == "spark://127.0.0.1:7199"
    assert _settings(tmp_path, stack_mode="cluster", spark_master="spark://elsewhere:7077").spark_master_url \
        == "spark://elsewhere:7077"
    monkeypatch.setenv("EVCHARGING_STACK_MODE", "cluster")
    assert Settings(data_dir=tmp_path).spark_master_url == "spark://127.0.0.1:7077"
    assert not Settings(data_dir=tmp_path).spark_is_local
    assert _settings(tmp_path, spark_master="local[*]").spark_is_local


def test_spark_config_on_a_cluster_shares_cores_and_runs_the_drivers_python(tmp_path):
    local = spark_config(_settings(tmp_path))
    assert local["spark.master"] == "local[2]"
    assert not {"spark.cores.max", "spark.executor.memory", "spark.pyspark.python"} & set(local)
    cluster = spark_config(_settings(tmp_path, stack_mode="cluster", spark_cores_max=3, spark_executor_memory="700m"))
    assert cluster["spark.master"] == "spark://127.0.0.1:7077"
    assert cluster["spark.cores.max"] == "3" and cluster["spark.executor.memory"] == "700m"
    assert cluster["spark.pyspark.python"] == sys.executable
    assert {k: v for k, v in cluster.items() if k in local} == {**local, "spark.master": cluster["spark.master"]}
    explicit = spark_config(_settings(tmp_path, spark_master="spark://other:7077"))  # a cluster of someone else's
    assert explicit["spark.cores.max"] == "1"
    # The sessions lane's resource, as Dagster binds it, follows the mode too.
    lane = spark_resource(_settings(tmp_path, stack_mode="cluster"), secrets_as_env=True).spark_config
    assert lane["spark.master"] == "spark://127.0.0.1:7077" and lane["spark.cores.max"] == "1"


def test_only_a_local_long_lived_driver_commits_its_heap_at_start(tmp_path, monkeypatch):
    monkeypatch.delenv("EVCHARGING_SPARK_MASTER", raising=False)
    monkeypatch.delenv("EVCHARGING_STACK_MODE", raising=False)
    local = long_lived_driver(_settings(tmp_path, spark_driver_memory="3g"))
    assert local["spark.driver.extraJavaOptions"].split() == ["-XX:+TieredCompilation", "-Xms3g", "-XX:+AlwaysPreTouch"]
    # On a cluster the driver only plans: compose's stream container has no room for a touched heap.
    # Either way the long-lived driver keeps C2, which a batch driver's config turns off.
    assert spark_config(_settings(tmp_path))["spark.driver.extraJavaOptions"] == "-XX:TieredStopAtLevel=1"
    for cluster in (dict(stack_mode="cluster"), dict(spark_master="spark://elsewhere:7077")):
        options = long_lived_driver(_settings(tmp_path, **cluster))
        assert options == {"spark.driver.extraJavaOptions": "-XX:+TieredCompilation"}


def test_readiness_parsing():
    assert spark_cluster.cluster_ready(MASTER_JSON, 2)
    assert not spark_cluster.cluster_ready(MASTER_JSON, 3)
    assert not spark_cluster.cluster_ready({**MASTER_JSON, "status": "RECOVERING"}, 2)
    without_count = {k: v for k, v in MASTER_JSON.items() if k != "aliveworkers"}  # counted from the list then
    assert spark_cluster.cluster_ready(without_count, 2)
    assert [w["id"] for w in spark_cluster.alive_workers(MASTER_JSON)] == ["worker-1", "worker-2"]
    assert [(a["name"], a["cores"]) for a in spark_cluster.running_apps(MASTER_JSON)] == [
        ("evcharging-stream-events", 1), ("evcharging-sessions", 1)]
    assert spark_cluster.running_apps({}) == [] and not spark_cluster.cluster_ready({}, 0)


@pytest.fixture
def master_json():
    """An HTTP server answering /json/ as a master on its port would: MASTER_JSON with the workers' UIs
    at the ports the stack gives workers 0, 1 (alive) and 2 (dead). Yields the port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            port = self.server.server_address[1]
            workers = [{**w, "webuiaddress": f"http://127.0.0.1:{port + 1 + i}"}
                       for i, w in enumerate(sorted(MASTER_JSON["workers"], key=lambda w: w["state"]))]
            body = json.dumps({**MASTER_JSON, "workers": workers}).encode() if self.path == "/json/" else b""
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_master_and_worker_health_from_the_masters_json(tmp_path, master_json):
    s = _settings(tmp_path, stack_mode="cluster", spark_master_webui_port=master_json, spark_workers=3)
    master, *workers = spark_cluster.cluster_services(s)
    assert master.healthy(s)
    assert {w.name: w.healthy(s) for w in workers} == {
        "spark-worker-0": True, "spark-worker-1": True, "spark-worker-2": False}  # the master lists 2 as DEAD
    ready = s.model_copy(update={"spark_workers": 2})
    assert spark_cluster.wait_until_ready(ready, timeout=2)["aliveworkers"] == 2
    with pytest.raises(spark_cluster.StackError, match="shows 2 alive workers .*EVCHARGING_SPARK_WORKERS=3"):
        spark_cluster.wait_until_ready(s, timeout=1)


def test_the_cluster_is_part_of_the_stack_only_in_cluster_mode(tmp_path):
    single, cluster = _settings(tmp_path), _settings(tmp_path, stack_mode="cluster", spark_workers=2)
    assert [s.name for s in stack.services(single)] == [s.name for s in SERVICES] + ["kafka"]
    assert [s.name for s in stack.services(cluster)][len(SERVICES):] == [
        "kafka-1", "kafka-2", "kafka-3", "spark-master", "spark-worker-0", "spark-worker-1"]
    # `down` also stops what an earlier cluster-mode `up` with more workers left, whatever the mode now.
    single.run_dir.mkdir(parents=True)
    (single.run_dir / "spark-worker-3.pid").write_text("1 1\n")
    assert [s.name for s in stack.services(single, started=True)][len(SERVICES):] == [
        "kafka", "spark-master", "spark-worker-0", "spark-worker-1", "spark-worker-3"]
    assert stack.service(single, "spark-worker-3").index == 3
    with pytest.raises(spark_cluster.StackError, match="no such service"):
        stack.service(single, "spark-worker-x")


def test_master_and_workers_start_from_the_wheel_with_their_state_under_the_data_dir(tmp_path):
    s = _settings(tmp_path, stack_mode="cluster", spark_master_port=7101, spark_master_webui_port=8101,
                  spark_worker_cores=2, spark_worker_memory="768m")
    started = {}

    class Proc:
        def __init__(self, name):
            self.name = name

        def start(self, argv, env=None, cwd=None):
            started[self.name] = (argv, env, cwd)

    for svc in spark_cluster.cluster_services(s):
        svc.launch(s, Proc(svc.name))
    argv, env, _ = started["spark-master"]
    assert argv[0] == str(spark_cluster.spark_home() / "bin" / "spark-class")
    assert argv[1:] == [spark_cluster.MASTER_CLASS, "--host", "127.0.0.1", "--port", "7101", "--webui-port", "8101"]
    argv, env, cwd = started["spark-worker-1"]
    assert argv[1:] == [spark_cluster.WORKER_CLASS, "spark://127.0.0.1:7101", "--host", "127.0.0.1", "--cores", "2",
                        "--memory", "768m", "--webui-port", "8103", "--work-dir", str(tmp_path / "spark" / "spark-worker-1")]
    assert cwd == tmp_path / "spark" / "spark-worker-1" and cwd.is_dir()
    for key in ("SPARK_LOG_DIR", "SPARK_PID_DIR", "SPARK_WORKER_DIR", "SPARK_LOCAL_DIRS"):
        assert env[key].startswith(str(tmp_path)), key
    assert list(spark_cluster.cluster_services(s)[2].ports(s)) == [8103]
