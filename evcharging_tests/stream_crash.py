"""Run the stream as its own process, SIGKILL it in the middle of a batch, restart it to the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from evcharging.dagster_dev import group_alive
from evcharging.settings import PROJECT_DIR
from evcharging.streaming.batches import branch_name


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evcharging.streaming", "--available-now", *args],
                            cwd=PROJECT_DIR, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def group_java_args(pgid: int) -> list[str]:
    """The command line of the java process in a process group (the stream's Spark driver), or []."""
    for pid in group_alive(pgid):
        try:
            args = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        except OSError:  # it ended while we looked
            continue
        if args and Path(args[0]).name == "java":
            return args
    return []


def kill_mid_batch_then_finish(repo, stream: str, args: list[str], batch_id: int = 2,
                               timeout: float = 300) -> list[str]:
    """Kill the stream as soon as batch ``batch_id``'s branch exists (its files are being written,
    nothing committed), check the batch was not tagged, then let a restart drain the topic.
    Returns the killed stream's JVM command line."""
    target = branch_name(stream, batch_id)
    proc = _start(args)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if any(b.id == target for b in repo.branches(prefix=target)):
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the stream ended before batch {batch_id}:\n" + proc.stdout.read().decode()[-3000:]
        java = group_java_args(proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert not [t.id for t in repo.tags(prefix=target.replace("ingest-", "ingested-", 1))], "killed batch was tagged"
    restarted = _start(args)
    output, _ = restarted.communicate(timeout=timeout * 2)
    assert restarted.returncode == 0, output.decode()[-3000:]
    return java
