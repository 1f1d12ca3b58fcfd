"""Waiting out an outage of a service the stream needs (Kafka, lakeFS, MinIO).

The stream's state is its checkpoint, and a batch's write is idempotent (see ``batches``), so the
answer to a service going away is to stop the query, wait until the service answers again, and
start the query again from the checkpoint: the batch that failed is replayed with the same
offsets. Waiting backs off exponentially, with one log line per attempt; past the window
(``EVCHARGING_STREAM_OUTAGE_WINDOW_SECONDS``) the stream gives up with one line naming the service
and its setting.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from evcharging.settings import Settings

log = logging.getLogger("evcharging.streaming")


class StreamOutageError(RuntimeError):
    """A service stayed unreachable for longer than the outage window."""


@dataclass(frozen=True)
class Service:
    name: str
    setting: str
    value: str
    probe: Callable[[], bool]

    def describe(self) -> str:
        return f"{self.name} at {self.setting}={self.value}"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status < 300
    except Exception:  # any failure to get an answer means: not reachable now
        return False


def _kafka_ok(bootstrap: str) -> bool:
    from evcharging.resources.kafka import list_topics

    try:
        asyncio.run(asyncio.wait_for(list_topics(bootstrap), 10))
        return True
    except Exception:  # refused, timed out, no broker: not reachable now
        return False


def stream_services(s: Settings) -> list[Service]:
    """What the stream depends on, each with its health probe."""
    return [
        Service("Kafka", "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS", s.kafka_bootstrap_servers,
                lambda: _kafka_ok(s.kafka_bootstrap_servers)),
        Service("lakeFS", "EVCHARGING_LAKEFS_ENDPOINT", s.lakefs_endpoint,
                lambda: _http_ok(f"{s.lakefs_endpoint}/api/v1/healthcheck")),
        Service("MinIO", "EVCHARGING_MINIO_ENDPOINT", s.minio_endpoint,
                lambda: _http_ok(f"{s.minio_endpoint}/minio/health/live")),
    ]


def backoff_delays(first: float = 1.0, factor: float = 2.0, cap: float = 30.0) -> Iterator[float]:
    """1, 2, 4 … seconds, at most ``cap``."""
    delay = first
    while True:
        yield min(delay, cap)
        delay *= factor


class OutageWatch:
    """Tracks one outage: when it began, the attempts, and the window it must end within."""

    def __init__(self, services: list[Service], window_s: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.services, self.window_s, self.clock, self.sleep = services, window_s, clock, sleep
        self.began: float | None = None
        self._delays = backoff_delays()
        self.attempts = 0

    def over(self) -> None:
        """The stream made progress again: the next failure starts a new outage."""
        if self.began is not None:
            log.info("stream: resumed after %s attempts, %.0f s", self.attempts, self.clock() - self.began)
        self.began, self._delays, self.attempts = None, backoff_delays(), 0

    def down(self) -> Service | None:
        return next((service for service in self.services if not service.probe()), None)

    def wait_until_up(self, cause: str) -> None:
        """Wait, with backoff and one log line per attempt, until every service answers; raise
        StreamOutageError (naming the service and its setting) once the window has passed."""
        if self.began is None:
            self.began = self.clock()
        while True:
            self.attempts += 1
            service = self.down()
            elapsed = self.clock() - self.began
            if service is None:
                log.warning("stream: attempt %s: every service answers again (%s); restarting from the checkpoint",
                            self.attempts, cause)
                return
            if elapsed > self.window_s:
                raise StreamOutageError(
                    f"{service.describe()} has been unreachable for {elapsed:.0f} s, longer than "
                    f"EVCHARGING_STREAM_OUTAGE_WINDOW_SECONDS={self.window_s:g}; start the service (or fix the "
                    f"setting) and start the stream again: it resumes from its checkpoint")
            delay = min(next(self._delays), max(self.window_s - elapsed, 0) + 0.5)
            log.warning("stream: %s is unreachable (attempt %s, %.0f s of %g s); retrying in %.0f s",
                        service.describe(), self.attempts, elapsed, self.window_s, delay)
            self.sleep(delay)
