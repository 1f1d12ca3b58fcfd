"""`up`, `down`, `status` for the whole native stack."""

from __future__ import annotations

import time
from dataclasses import dataclass

from evcharging.settings import Settings, ensure_local_secrets
from evcharging.stack import builds
from evcharging.stack.builds import Progress
from evcharging.stack.process import ManagedProcess, StackError, port_open, wait_for
from evcharging.stack import spark_cluster
from evcharging.stack.services import HOST, SERVICES, Service, kafka_services


@dataclass
class ServiceStatus:
    name: str
    state: str  # "healthy", "unhealthy", "stopped", "ready" (libraries)
    endpoint: str
    pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.state in ("healthy", "ready")


def services(settings: Settings, started: bool = False) -> list[Service]:
    """The stack's services in start order: Kafka's brokers (one, or three in cluster mode), and the
    Spark master and workers in cluster mode (with ``started``, also whatever of either still has a
    pid file, whatever the mode: ``down`` stops it)."""
    found = SERVICES + kafka_services(settings, started)
    if settings.stack_mode == "cluster" or (started and any(settings.run_dir.glob("spark-*.pid"))):
        return found + spark_cluster.cluster_services(settings, started)
    return found


def service(settings: Settings, name: str) -> Service:
    for svc in SERVICES + kafka_services(settings, started=True) + spark_cluster.cluster_services(settings, started=True):
        if svc.name == name:
            return svc
    raise StackError(name, f"no such service; the stack has {', '.join(s.name for s in services(settings))}")


def install(settings: Settings, progress: Progress) -> dict[str, float]:
    """Build/download every component (cached); returns seconds per component."""
    timings = {}
    steps = [(svc.name, lambda svc=svc: svc.install(settings, progress)) for svc in services(settings)]
    steps.append(("spark-jars", lambda: builds.spark_jars(settings.cache_dir, progress)))
    steps.append(("spark-class-archive", lambda: _optional(builds.spark_class_archive, settings, progress)))
    for name, step in steps:
        started = time.monotonic()
        step()
        timings[name] = time.monotonic() - started
    return timings


def _optional(build, settings: Settings, progress: Progress) -> None:
    """A build that only makes things faster (the Spark class archive): if it fails, say so and go on."""
    try:
        build(settings.cache_dir, progress)
    except StackError as err:
        progress(f"{err} -- Spark drivers start without the class archive (slower, otherwise the same)")


def _start(svc: Service, s: Settings, progress: Progress) -> ManagedProcess | None:
    """Start one service unless it already runs healthy; returns the process if we started it."""
    proc = svc.process(s)
    if proc.running():
        if wait_for(lambda: svc.started(s), timeout=svc.start_timeout):
            progress(f"{svc.name}: already running (pid {proc.pid()})")
            return None
        raise StackError(svc.name, f"runs (pid {proc.pid()}) but is not healthy; try `evcharging stack down`",
                         proc.log_file)
    for port, setting in svc.ports(s).items():
        if port_open(HOST, port):
            raise StackError(svc.name, f"port {port} on {HOST} is already taken by a process this stack did not "
                                       f"start; stop that process or choose another port with {setting}", proc.log_file)
    progress(f"{svc.name}: starting")
    svc.launch(s, proc)
    started = time.monotonic()
    if not wait_for(lambda: not proc.running() or svc.started(s), timeout=svc.start_timeout):
        proc.stop()
        raise StackError(svc.name, f"did not become healthy within {svc.start_timeout:.0f}s", proc.log_file)
    if not proc.running():
        raise StackError(svc.name, "exited during start-up:\n" + proc.log_tail(15), proc.log_file)
    try:
        svc.initialise(s)
    except Exception as exc:  # stop it here: the caller only stops what _start returned
        proc.stop()
        raise StackError(svc.name, f"started, but setting it up failed: {type(exc).__name__}: {exc}",
                         proc.log_file) from exc
    # A cluster's first Kafka brokers only listen until a quorum of controllers runs.
    progress(f"{svc.name}: {svc.started_as(s)} in {time.monotonic() - started:.1f}s")
    return proc


def up(settings: Settings, progress: Progress = print) -> list[ServiceStatus]:
    """Install what is missing, start what is not running, wait until healthy, initialise.

    Idempotent. On any failure the services started by this call are stopped again, so nothing
    half-started is left behind, and one StackError says which service failed and where its log is.
    """
    settings = ensure_local_secrets(settings)
    install(settings, progress)
    started: list[ManagedProcess] = []
    try:
        for svc in services(settings):
            proc = _start(svc, settings, progress)
            if proc:
                started.append(proc)
        for svc in services(settings):  # a broker restarted beside running ones: back in the cluster
            if not wait_for(lambda: svc.healthy(settings), timeout=svc.start_timeout):
                raise StackError(svc.name, f"not healthy within {svc.start_timeout:.0f}s of starting",
                                 svc.process(settings).log_file)
        if settings.stack_mode == "cluster":
            spark_cluster.wait_until_ready(settings)
    except BaseException:
        for proc in reversed(started):
            proc.stop()
        raise
    return status(settings)


def down(settings: Settings, progress: Progress = print) -> list[str]:
    """Stop every process this stack started (by pid file), in reverse start order."""
    stopped = []
    for svc in reversed(services(settings, started=True)):
        if svc.process(settings).stop():
            progress(f"{svc.name}: stopped")
            stopped.append(svc.name)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    rows = []
    for svc in services(settings):
        proc = svc.process(settings)
        pid = proc.pid()
        if pid is None:
            state = "stopped"
        else:
            state = "healthy" if wait_for(lambda: svc.healthy(settings), timeout=2) else "unhealthy"
        rows.append(ServiceStatus(svc.name, state, svc.endpoint(settings), pid))
    jars = sorted(p.name for p in settings.cache_dir.glob(f"{builds.SPARK_EXTRA_JARS_KEY}-*/libs"))
    rows.append(ServiceStatus("spark", "ready" if jars else "stopped",
                              f"{settings.spark_master_url} with Kafka + S3A jars ({'cached' if jars else 'not resolved'})"))
    if settings.clickhouse_url:
        rows.append(ServiceStatus("clickhouse", "ready", "ClickHouse server (EVCHARGING_CLICKHOUSE_URL)"))
    else:
        rows.append(ServiceStatus("clickhouse", "ready", f"embedded chDB at {settings.chdb_dir}"))
    return rows
