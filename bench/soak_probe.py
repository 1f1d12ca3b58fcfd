"""What `bench_freshness --soak` watches over hours: the memory of every long-lived process, the disk
the run adds, and the freshness of its first and last minutes. Read from /proc and `du`, nothing
is asked of the processes themselves.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

# A long-lived process's role, from its command line (first match wins); run workers and Spark
# jobs of single runs are not long-lived and are left out by ``RssSampler.trends``.
ROLES = (
    ("dagster-webserver", "webserver"), ("dagster_webserver", "webserver"),
    ("dagster._daemon", "daemon"), ("dagster-daemon", "daemon"),
    ("api grpc", "code server"), ("code-server start", "code server proxy"),
    ("dagster dev", "dagster dev"),
    ("evcharging.streaming", "stream driver"),
    ("kafka.Kafka", "kafka"), ("minio server", "minio"), ("lakefs run", "lakefs"), ("ferretdb --listen-addr", "ferretdb"),
    ("postgres -D", "postgres"), ("-m simulator", "simulator"),
)
_TICKS = os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _proc_mb(pid: int, file: str, field: str) -> float | None:
    """A ``field: <n> kB`` line of ``/proc/<pid>/<file>`` in MB; None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _rss_mb(pid: int) -> float | None:
    return _proc_mb(pid, "status", "VmRSS:")


def _pss_mb(pid: int) -> float | None:
    """Proportional set size: shared pages divided among the processes that map them, so the PSS of
    PostgreSQL's backends adds up without counting its shared buffers once per backend."""
    return _proc_mb(pid, "smaps_rollup", "Pss:")


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent, …), None once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS if fields else None


def _machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy (not idle or waiting on I/O) since boot."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


class _Periodic(threading.Thread):
    """A daemon thread that calls ``sample()`` every ``every`` seconds until ``stop()``."""

    def __init__(self, every: float):
        super().__init__(daemon=True)
        self.every = every
        self._halt = threading.Event()

    def sample(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class RssSampler(_Periodic):
    """Every ``every`` seconds, the RSS of each process whose role ``ROLES`` names, plus the JVM under
    the stream driver (``stream driver JVM``), keyed by role and pid; and the summed PSS of
    PostgreSQL's backends (FerretDB's and lakeFS's storage) as ``postgres backends (PSS)``."""

    def __init__(self, stream_pid: int, every: float = 30.0):
        super().__init__(every)
        self.stream_pid = stream_pid
        self.samples: list[tuple[float, str, int, float]] = []  # (time, role, pid, MB)
        self.cpu: list[tuple[float, str, int, float]] = []  # (time, role or "machine", pid, CPU seconds so far)

    def sample(self) -> None:
        now = time.time()
        self.cpu.append((now, "machine (all processes)", 0, _machine_busy_seconds()))
        backends = 0.0  # PostgreSQL's backends come and go with their clients (FerretDB's, lakeFS's pools)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            command = _cmdline(pid)
            if command.startswith("postgres: "):
                backends += _pss_mb(pid) or 0.0
            role = next((name for pattern, name in ROLES if pattern in command), None)
            if role is None and "java" in command.split(" ", 1)[0] and _parent(pid) == self.stream_pid:
                role = "stream driver JVM"
            rss = _rss_mb(pid) if role else None
            if rss:
                self.samples.append((now, role, pid, rss))
                self.cpu.append((now, role, pid, _cpu_seconds(pid) or 0.0))
        if backends:
            self.samples.append((now, "postgres backends (PSS)", 0, backends))

    def trends(self, first: tuple[float, float], last: tuple[float, float]) -> dict[str, dict]:
        """Per role (a process alive in both windows), mean RSS in the ``first`` and ``last`` windows
        (start, end) and their ratio; the maximum over the whole run."""
        out: dict[str, dict] = {}
        keys = {(role, pid) for _, role, pid, _ in self.samples}
        for role, pid in sorted(keys):
            mine = [(t, mb) for t, r, p, mb in self.samples if (r, p) == (role, pid)]
            a = [mb for t, mb in mine if first[0] <= t < first[1]]
            b = [mb for t, mb in mine if last[0] <= t < last[1]]
            if not a or not b:
                continue  # not long-lived: a run's process, or one that restarted
            name = role if role not in out else f"{role} ({pid})"
            out[name] = {"pid": pid, "first_mb": round(float(np.mean(a)), 1), "last_mb": round(float(np.mean(b)), 1),
                         "ratio": round(float(np.mean(b) / np.mean(a)), 3), "max_mb": round(max(mb for _, mb in mine), 1)}
        return out

    def timeline(self, window: tuple[float, float], step: float = 600.0) -> dict[str, list[float]]:
        """Per long-lived role (as ``trends`` names them), its mean RSS in MB per ``step`` seconds of the
        ``window``: the shape of a trend (a cache filling and levelling off, or a steady climb)."""
        keys = sorted({(role, pid) for t, role, pid, _ in self.samples if window[0] <= t < window[1]})
        buckets = int((window[1] - window[0]) // step) or 1
        out: dict[str, list[float]] = {}
        for role, pid in keys:
            mine = [(t, mb) for t, r, p, mb in self.samples if (r, p) == (role, pid) and window[0] <= t < window[1]]
            means = []
            for b in range(buckets):
                inside = [mb for t, mb in mine if window[0] + b * step <= t < window[0] + (b + 1) * step]
                means.append(round(float(np.mean(inside)), 1) if inside else None)
            if all(m is not None for m in means):  # alive the whole window
                out[role if role not in out else f"{role} ({pid})"] = means
        return out

    def cpu_trends(self, first: tuple[float, float], last: tuple[float, float]) -> dict[str, dict]:
        """Cores each long-lived process kept busy in the ``first`` and ``last`` windows, and the whole
        machine's (2 cores = 2.0): what the rest (runs, Spark passes) takes is the difference."""
        def cores(points, window):
            inside = [(t, c) for t, c in points if window[0] <= t < window[1]]
            return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) if len(inside) > 1 else None

        out: dict[str, dict] = {}
        for role, pid in sorted({(role, pid) for _, role, pid, _ in self.cpu}):
            points = [(t, c) for t, r, p, c in self.cpu if (r, p) == (role, pid)]
            a, b = cores(points, first), cores(points, last)
            if a is not None and b is not None:
                out[role if role not in out else f"{role} ({pid})"] = {"first_cores": round(a, 2), "last_cores": round(b, 2)}
        return out


def active_parts(table_dir: Path) -> tuple[int, int]:
    """(active parts, merges in flight) of a MergeTree table, read from its directory: a part's name is
    ``<partition>_<min block>_<max block>_<level>[_<mutation>]`` and it is active unless another part of
    the partition covers its blocks (outdated parts stay on disk for minutes); ``tmp_merge_*`` folders
    are merges under way. chDB is locked by the runs, so the folder is the only view from outside."""
    try:
        names = os.listdir(table_dir)
    except OSError:
        return 0, 0
    merging = sum(name.startswith("tmp_merge_") for name in names)
    parts = []
    for name in names:
        fields = name.split("_")
        if name.startswith(("tmp", "delete_tmp", "detached")) or len(fields) < 4 or not fields[1].isdigit():
            continue
        mutation = int(fields[4]) if len(fields) > 4 and fields[4].isdigit() else 0
        parts.append((fields[0], int(fields[1]), int(fields[2]), int(fields[3]), mutation))
    covered = 0
    for part in parts:
        if any(o != part and o[0] == part[0] and o[1] <= part[1] and part[2] <= o[2] and
               ((o[1], o[2]) != (part[1], part[2]) or (o[3], o[4]) > (part[3], part[4])) for o in parts):
            covered += 1
    return len(parts) - covered, merging


class PartsSampler(_Periodic):
    """Every ``every`` seconds, the active parts and merges in flight of each table in ``tables``
    (name → its folder under chDB's data directory)."""

    def __init__(self, tables: dict[str, Path], every: float = 30.0):
        super().__init__(every)
        self.tables = tables
        self.samples: list[tuple[float, str, int, int]] = []  # (time, table, active parts, merges)

    def sample(self) -> None:
        now = time.time()
        for name, folder in self.tables.items():
            self.samples.append((now, name, *active_parts(folder)))

    def trends(self, first: tuple[float, float], last: tuple[float, float]) -> dict[str, dict]:
        """Per table: mean active parts in the ``first`` and ``last`` windows, the most seen, and the
        share of samples with a merge under way (chDB merges only inside a process that holds it)."""
        out = {}
        for name in self.tables:
            mine = [(t, n, m) for t, table, n, m in self.samples if table == name]
            a = [n for t, n, _ in mine if first[0] <= t < first[1]]
            b = [n for t, n, _ in mine if last[0] <= t < last[1]]
            if mine:
                out[name] = {"first_parts": round(float(np.mean(a)), 1) if a else None,
                             "last_parts": round(float(np.mean(b)), 1) if b else None,
                             "max_parts": max(n for _, n, _ in mine),
                             "merging_share": round(sum(m > 0 for *_, m in mine) / len(mine), 2)}
        return out


def disk_bytes(paths: dict[str, Path]) -> dict[str, int]:
    """`du -sb` of each path (0 when it does not exist)."""
    out = {}
    for name, path in paths.items():
        if not path.exists():
            out[name] = 0
            continue
        done = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, timeout=600)
        out[name] = int(done.stdout.split()[0]) if done.stdout else 0
    return out


def windowed_p95(sent: np.ndarray, fresh: np.ndarray, start: float, end: float, minutes: float = 15) -> dict:
    """Freshness p50/p95 of the events sent in the first and in the last ``minutes`` of [start, end)."""
    span = minutes * 60
    out = {}
    for name, (lo, hi) in (("first", (start, start + span)), ("last", (end - span, end))):
        values = fresh[(sent >= lo) & (sent < hi) & ~np.isnan(fresh)]
        out[name] = {"events": int(values.size), "p50_s": float(np.percentile(values, 50)) if values.size else None,
                     "p95_s": float(np.percentile(values, 95)) if values.size else None}
    if out["first"]["p95_s"] and out["last"]["p95_s"]:
        out["p95_ratio_last_to_first"] = out["last"]["p95_s"] / out["first"]["p95_s"]
    return out


def rate_floor(sent: np.ndarray, start: float, end: float, bucket: float = 60.0) -> dict:
    """Events sent per second in each whole minute of [start, end): the lowest, the median, the highest."""
    inside = sent[(sent >= start) & (sent < end)]
    counts = np.bincount(((inside - start) // bucket).astype(int))[: int((end - start) // bucket)] / bucket
    return {"minutes": int(counts.size), "min_per_s": float(counts.min()), "median_per_s": float(np.median(counts)),
            "max_per_s": float(counts.max())}


def duration_trends(spans: dict[str, list[tuple[float, float]]], first: tuple[float, float],
                    last: tuple[float, float]) -> dict[str, dict]:
    """Per job, the p50 duration of its runs started in the ``first`` and in the ``last`` window: a
    recurring step that costs what history costs gets slower from one to the other."""
    out = {}
    for job, runs in spans.items():
        a = [end - start for start, end in runs if first[0] <= start < first[1]]
        b = [end - start for start, end in runs if last[0] <= start < last[1]]
        if a and b:
            out[job] = {"first_p50_s": round(float(np.median(a)), 2), "last_p50_s": round(float(np.median(b)), 2),
                        "runs": [len(a), len(b)], "ratio": round(float(np.median(b) / np.median(a)), 2)}
    return out
