"""`evcharging dev` started the way the real-stack tests need it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from evcharging.settings import PROJECT_DIR


def start_dev(port: int, env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """`evcharging dev` on ``port``, in a session of its own (a test signals its whole group), its
    output appended to ``log``. A file, not a pipe: nothing reads a pipe while a test waits. A run
    writes ~36 KB there (the daemon's ticks, the runs' events); a slower one fills a pipe's 64 KiB,
    and then every writer blocks, `evcharging dev` too on its "stopped" line after Ctrl-C (CI once
    timed out there)."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "evcharging.cli", "dev", "--port", str(port)], cwd=PROJECT_DIR,
                                env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
