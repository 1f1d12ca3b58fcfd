"""Named points where a test can hold a process, to kill it there with a real SIGKILL.

Outside tests nothing happens: the environment names no point. A test sets
``EVCHARGING_CRASHPOINTS`` to comma-separated point names and ``EVCHARGING_CRASHPOINT_DIR`` to a
folder; the first process that reaches a named point writes its pid to ``<dir>/<point>.pid`` and
waits there (until ``<dir>/<point>.go`` appears, at most ``HOLD_SECONDS``) for the test to kill it.
A later pass through the same point — the re-run — goes on, so the daemon's runs can keep the
environment. The points are where a crash hurts most:

* ``before_merge``: a batch's copies are withdrawn from its branch, the merge into main not done;
* ``after_merge``: merged into main, the batch's branch not deleted yet;
* ``before_load_recorded``: ClickHouse holds a commit's events, ``load_log`` does not record it yet.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HOLD_SECONDS = 600


def crashpoint(name: str) -> None:
    """Hold here if a test asked for point ``name`` and no process held here before."""
    wanted = os.environ.get("EVCHARGING_CRASHPOINTS", "")
    if name not in wanted.split(","):
        return
    folder = Path(os.environ["EVCHARGING_CRASHPOINT_DIR"])
    try:
        fd = os.open(folder / f"{name}.pid", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # held here once already: this is the re-run
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    deadline = time.monotonic() + HOLD_SECONDS
    while not (folder / f"{name}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
