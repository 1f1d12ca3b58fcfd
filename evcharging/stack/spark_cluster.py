"""A Spark standalone cluster in the native local stack (``EVCHARGING_STACK_MODE=cluster``).

A master and ``EVCHARGING_SPARK_WORKERS`` workers run from the pyspark wheel, which has
``bin/spark-class`` but no ``start-master.sh``/``start-worker.sh``. Logs go to ``<data_dir>/logs``,
PIDs to ``<data_dir>/run``, work and scratch directories to ``<data_dir>/spark``. Readiness comes from
the master's JSON (``/json/``): the master is ALIVE, and a worker is ready once the master lists it
ALIVE; the cluster is ready when it lists exactly the configured number of alive workers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from evcharging.settings import Settings
from evcharging.stack.process import StackError, wait_for
from evcharging.stack.services import HOST, Service

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DAEMON_MEMORY = "256m"  # the master's and each worker's own heap (executors get EVCHARGING_SPARK_WORKER_MEMORY)


def spark_home() -> Path:
    """The pyspark package directory: the wheel ships Spark's jars and ``bin/spark-class`` there."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise StackError("spark-master", "pyspark is not installed in this Python")
    return Path(spec.origin).parent


def master_json_url(s: Settings) -> str:
    return f"http://{HOST}:{s.spark_master_webui_port}/json/"


def master_state(s: Settings, timeout: float = 2.0) -> dict:
    """The master's JSON (raises while it does not answer)."""
    with urllib.request.urlopen(master_json_url(s), timeout=timeout) as resp:
        return json.load(resp)


def alive_workers(state: dict) -> list[dict]:
    return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]


def cluster_ready(state: dict, workers: int) -> bool:
    """The master is ALIVE and sees exactly ``workers`` alive workers."""
    alive = state.get("aliveworkers", len(alive_workers(state)))
    return state.get("status") == "ALIVE" and alive == workers


def running_apps(state: dict) -> list[dict]:
    """The applications the master runs now (each with the ``cores`` it was granted)."""
    return [a for a in state.get("activeapps", []) if a.get("state") == "RUNNING"]


def worker_webui_port(s: Settings, index: int) -> int:
    return s.spark_master_webui_port + 1 + index


def _env(s: Settings, work: Path) -> dict[str, str]:
    """Everything Spark would otherwise put under site-packages goes under the data directory."""
    for folder in (work, s.data_dir / "spark" / "local", s.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return {"SPARK_HOME": str(spark_home()), "SPARK_LOG_DIR": str(s.logs_dir), "SPARK_PID_DIR": str(s.run_dir),
            "SPARK_WORKER_DIR": str(work), "SPARK_LOCAL_DIRS": str(s.data_dir / "spark" / "local"),
            "SPARK_LOCAL_IP": HOST, "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
            # Finished applications' work folders (executor logs, jars) are removed after a day.
            "SPARK_WORKER_OPTS": "-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.appDataTtl=86400"}


def _spark_class(name: str) -> str:
    if not shutil.which("java", path=f"{os.environ.get('JAVA_HOME', '')}/bin:{os.environ.get('PATH', '')}"):
        raise StackError(name, "no `java` on PATH (Java 17 is needed)")
    path = spark_home() / "bin" / "spark-class"
    if not path.exists():
        raise StackError(name, f"{path} not found: reinstall pyspark")
    return str(path)


class _SparkDaemon(Service):
    """A Spark daemon run by the wheel's ``spark-class``, in its work folder ``<data_dir>/spark/<name>``."""

    def arguments(self, s: Settings, work: Path) -> list[str]:
        raise NotImplementedError

    def install(self, s, progress):
        _spark_class(self.name)

    def launch(self, s, proc):
        work = s.data_dir / "spark" / self.name
        proc.start([_spark_class(self.name), *self.arguments(s, work)], env=_env(s, work), cwd=work)


class SparkMasterService(_SparkDaemon):
    """The standalone master: schedules applications (FIFO) on the workers' cores."""

    def ports(self, s):
        return {s.spark_master_port: "EVCHARGING_SPARK_MASTER_PORT",
                s.spark_master_webui_port: "EVCHARGING_SPARK_MASTER_WEBUI_PORT"}

    def endpoint(self, s):
        return (f"spark://{HOST}:{s.spark_master_port} (UI {master_json_url(s)[:-6]}, {s.spark_workers} workers × "
                f"{s.spark_worker_cores} cores, cores.max {s.spark_cores_max} per application)")

    def arguments(self, s, work):
        return [MASTER_CLASS, "--host", HOST, "--port", str(s.spark_master_port),
                "--webui-port", str(s.spark_master_webui_port)]

    def healthy(self, s):
        return master_state(s).get("status") == "ALIVE"


@dataclass
class SparkWorkerService(_SparkDaemon):
    """Worker ``index``: offers its cores and memory to the master; ready once the master lists it."""

    index: int = 0

    def ports(self, s):
        return {worker_webui_port(s, self.index): "EVCHARGING_SPARK_MASTER_WEBUI_PORT (workers take the next ports)"}

    def endpoint(self, s):
        return (f"{s.spark_worker_cores} cores, {s.spark_worker_memory} (UI http://{HOST}:"
                f"{worker_webui_port(s, self.index)})")

    def arguments(self, s, work):
        return [WORKER_CLASS, f"spark://{HOST}:{s.spark_master_port}", "--host", HOST,
                "--cores", str(s.spark_worker_cores), "--memory", s.spark_worker_memory,
                "--webui-port", str(worker_webui_port(s, self.index)), "--work-dir", str(work)]

    def healthy(self, s):
        ui = f":{worker_webui_port(s, self.index)}"
        return any(w.get("webuiaddress", "").endswith(ui) for w in alive_workers(master_state(s)))


def cluster_services(s: Settings, started: bool = False) -> list[Service]:
    """The master and the configured workers (``started``: also workers of an earlier, larger setting
    whose pid files remain, so that ``down`` stops them)."""
    indices = set(range(s.spark_workers))
    if started:
        indices |= {int(p.stem.rsplit("-", 1)[1]) for p in s.run_dir.glob("spark-worker-*.pid")
                    if p.stem.rsplit("-", 1)[1].isdigit()}
    return [SparkMasterService("spark-master", start_timeout=90),
            *(SparkWorkerService(f"spark-worker-{i}", start_timeout=90, index=i) for i in sorted(indices))]


def wait_until_ready(s: Settings, timeout: float = 60) -> dict:
    """The master's JSON once it sees exactly the configured workers alive; one StackError otherwise."""
    state: dict = {}

    def ready() -> bool:
        nonlocal state
        state = master_state(s)
        return cluster_ready(state, s.spark_workers)

    if not wait_for(ready, timeout):
        log = cluster_services(s)[0].process(s).log_file
        raise StackError("spark-master", f"{master_json_url(s)} shows {state.get('aliveworkers', 'no')} alive "
                                         f"workers (status {state.get('status', 'unreachable')}), not "
                                         f"EVCHARGING_SPARK_WORKERS={s.spark_workers}, after {timeout:.0f}s", log)
    return state
