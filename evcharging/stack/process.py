"""Start, find and stop the stack's background processes — only the ones this stack started.

Each service gets ``<data_dir>/run/<name>.pid`` holding "PID START_TICKS": the start time from
``/proc/PID/stat`` makes sure a recycled PID of some other program is never mistaken for ours
(and never killed).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class StackError(RuntimeError):
    """One readable failure: which service, what went wrong, where its log is."""

    def __init__(self, service: str, problem: str, log: Path | None = None):
        self.service, self.problem, self.log = service, problem, log
        where = f" (log: {log})" if log else ""
        super().__init__(f"{service}: {problem}{where}")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after the last ')' are fixed.
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass(frozen=True)
class ManagedProcess:
    """A process of the stack, identified by its pid file."""

    name: str
    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        """The live PID this stack started, or None (stale pid files are removed)."""
        try:
            pid_s, ticks = self.pid_file.read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_s)
        if _start_ticks(pid) != ticks:
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              run_as: str | None = None) -> int:
        """Launch detached (own session, so Ctrl-C in the terminal does not reach it), log to file."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        user_kwargs = {}
        if run_as:
            pw = pwd.getpwnam(run_as)
            user_kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {argv[0]}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True, **user_kwargs,
            )
        ticks = None
        for _ in range(50):  # /proc entry appears at once, but be safe on a loaded machine
            ticks = _start_ticks(proc.pid)
            if ticks:
                break
            time.sleep(0.01)
        self.pid_file.write_text(f"{proc.pid} {ticks}\n")
        return proc.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the process group, SIGKILL after ``timeout`` s. True if something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        if not wait_for(lambda: _start_ticks(pid) is None or _is_zombie(pid), timeout, 0.2):
            _signal_group(pid, signal.SIGKILL)
            wait_for(lambda: _start_ticks(pid) is None or _is_zombie(pid), 10, 0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def rotate_logs(folder: Path, max_bytes: int) -> list[str]:
    """Rotate every ``*.log`` in ``folder`` larger than ``max_bytes``: its lines move to ``<name>.1``
    (replacing the previous one) and it starts empty. Copy, then truncate: the service keeps writing
    to the same file, opened for appending (:meth:`ManagedProcess.start`), so its next line lands at
    the start of the emptied file; a line written between the copy and the truncation is lost.
    Returns the names of the logs rotated."""
    rotated = []
    for log in sorted(folder.glob("*.log")) if folder.is_dir() else []:
        try:
            if log.stat().st_size <= max_bytes:
                continue
            previous = log.with_name(log.name + ".1")
            shutil.copyfile(log, previous)
            os.truncate(log, 0)
        except OSError:
            continue  # gone or unreadable: the next pass tries again
        rotated.append(log.name)
    return rotated


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: pgid == pid, children included
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass; never hangs longer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except Exception:  # a health probe that raises just means "not yet"
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
