"""`dagster dev` on the project's local instance, started and stopped as one unit, in bounded time.

`dagster dev` runs the webserver, the daemon and a code server, and every run it launches is a
process of its own (with a Spark JVM beneath it when a step needs one); on Ctrl-C it stops its
three services but not the runs in flight. So it is started here in a process group of its own
and stopped as a group: SIGINT first (a run worker then marks its run as interrupted), SIGKILL for
whatever is left after the grace period, and any run still recorded as in progress is marked
canceled. A killed publish or refresh leaves the lake and the warehouse consistent (a merge is
atomic; a load records its commit last), and the sensors ask for the work again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from evcharging.settings import PROJECT_DIR, Settings

Say = Callable[[str], None]
STOP_SECONDS = 20  # the promise: Ctrl-C of `evcharging dev` / `evcharging demo` is done within this
_GRACE_SECONDS = 10  # of which SIGINT gets this long before SIGKILL


def dagster_env(settings: Settings) -> dict[str, str]:
    """DAGSTER_HOME under the data directory, holding the project's dagster.yaml."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    if not link.exists():
        link.symlink_to(PROJECT_DIR / "dagster.yaml")
    return {**os.environ, "DAGSTER_HOME": str(home)}


def cancel_unfinished_runs(dagster_home: Path, why: str) -> int:
    """Mark runs recorded as started but no longer running (their processes are gone) as canceled.

    Called when no `dagster dev` of this instance runs: at start (after a crash or `kill -9`) and
    after stopping one. Queued runs stay queued: the next `dagster dev` launches them."""
    import dagster as dg

    os.environ.setdefault("DAGSTER_HOME", str(dagster_home))
    in_progress = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(dg.RunsFilter(statuses=in_progress))
        for run in runs:
            instance.report_run_canceled(run, message=why)
    return len(runs)


def group_alive(pgid: int) -> list[int]:
    """Processes of the group that still run (zombies excluded)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[2]) == pgid and stat[0] != "Z":
            alive.append(int(entry))
    return alive


class DagsterDev:
    """One `dagster dev` (webserver, daemon, code server, and the runs it launches)."""

    def __init__(self, settings: Settings, port: int, log_file: Path | None = None):
        self.settings, self.port, self.log_file = settings, port, log_file
        self.env = dagster_env(settings)
        self.proc: subprocess.Popen | None = None

    def start(self, say: Say) -> None:
        stale = cancel_unfinished_runs(self.settings.dagster_home, "its `dagster dev` had stopped without finishing it")
        if stale:
            say(f"marked {stale} run(s) left in progress by an earlier `dagster dev` as canceled")
        argv = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_DIR / "workspace.yaml"), "-h", "127.0.0.1",
                "-p", str(self.port)]
        out = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115 — kept open for the child
        self.proc = subprocess.Popen(argv, cwd=PROJECT_DIR, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                     start_new_session=True)  # its own group: stopped as one, with its runs

    def wait(self) -> int:
        return self.proc.wait()

    def stop(self, say: Say) -> None:
        """Stop everything the group runs within STOP_SECONDS, and say what was stopped."""
        if self.proc is None:
            return
        started, pgid = time.monotonic(), self.proc.pid
        with_runs = len(group_alive(pgid))
        say("stopping dagster dev (webserver, daemon, code server and any run in flight) …")
        try:
            os.killpg(pgid, signal.SIGINT)
        except ProcessLookupError:
            pass
        while group_alive(pgid) and time.monotonic() - started < _GRACE_SECONDS:
            time.sleep(0.2)
        left = group_alive(pgid)
        if left:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        while group_alive(pgid) and time.monotonic() - started < STOP_SECONDS - 2:
            time.sleep(0.1)
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        canceled = cancel_unfinished_runs(self.settings.dagster_home, "stopped with `evcharging dev`")
        remaining = group_alive(pgid)
        elapsed = time.monotonic() - started
        if remaining:
            say(f"dagster dev: processes {remaining} did not stop within {elapsed:.0f} s")
        else:
            say(f"dagster dev stopped in {elapsed:.1f} s: {with_runs} process(es)"
                f"{f', {len(left)} killed after {_GRACE_SECONDS} s' if left else ''}"
                f"{f'; {canceled} run(s) in flight marked canceled (the sensors ask for their work again)' if canceled else ''}")
