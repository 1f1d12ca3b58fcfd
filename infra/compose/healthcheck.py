"""Container health checks for the project image (it has no curl/wget: the slim base stays slim).

    python /app/infra/compose/healthcheck.py http URL [STATUS ...]   an HTTP GET answers (default 200)
    python /app/infra/compose/healthcheck.py tcp HOST:PORT[,HOST:PORT]  one of the addresses accepts
    python /app/infra/compose/healthcheck.py spark-app MASTER_UI_URL  the Spark master runs an application

Exit status 0 = healthy, 1 = not (with the reason on stderr), as Docker's HEALTHCHECK expects.
Standard library only, so a check costs a Python start-up and nothing else.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request

TIMEOUT = 5.0


def http(url: str, *statuses: str) -> str | None:
    wanted = {int(s) for s in statuses} or {200}
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            status = resp.status
    except urllib.error.HTTPError as err:
        status = err.code
    except OSError as err:
        return f"{url}: {err}"
    return None if status in wanted else f"{url}: HTTP {status}, expected {sorted(wanted)}"


def tcp(addresses: str) -> str | None:
    errors = []
    for address in addresses.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=TIMEOUT):
                return None
        except OSError as err:
            errors.append(f"{address}: {err}")
    return "; ".join(errors)


def spark_app(master_ui: str) -> str | None:
    try:
        with urllib.request.urlopen(master_ui.rstrip("/") + "/json/", timeout=TIMEOUT) as resp:
            state = json.load(resp)
    except (OSError, ValueError) as err:
        return f"{master_ui}: {err}"
    if not state.get("activeapps"):
        return f"{master_ui}: no application is running on the Spark master"
    return None


CHECKS = {"http": http, "tcp": tcp, "spark-app": spark_app}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in CHECKS:
        print(__doc__, file=sys.stderr)
        return 2
    problem = CHECKS[argv[0]](*argv[1:])
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
