"""Drives a World into a Sink: as fast as possible or paced at real time x speed, and on a stop
request (Ctrl-C, SIGTERM) finishes the step in hand, flushes, and still publishes the manifest."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from simulator.events import RunManifest
from simulator.sink import Sink
from simulator.world import World


def _wall_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


FAST_STEP_S = 900.0  # simulated seconds per step when unpaced: a session emits several events a call
PACED_STEP_WALL_S = 0.25  # wall seconds per step when paced: the most an event is held back


def default_step_s(progress_interval_s: float, speed: float) -> float:
    if speed <= 0:
        return max(progress_interval_s, FAST_STEP_S)
    return min(progress_interval_s, speed * PACED_STEP_WALL_S)


async def run(world: World, sink: Sink, *, speed: float = 0.0, step_s: float | None = None,
              fast_forward_s: float = 0.0, stop: asyncio.Event | None = None,
              on_step: Callable[[World, int], None] | None = None) -> RunManifest:
    """Advance the world `step_s` simulated seconds at a time (default: `default_step_s`), write
    each step's records, and return the manifest after it was published. The same steps give the
    same records in the same order.

    With speed > 0, simulated second t is emitted no earlier than wall start + t / speed; with
    ``fast_forward_s``, the first that many simulated seconds are emitted as fast as possible and the
    pacing starts after them (a day already under way, then live). The manifest counts exactly the
    records handed to the sink, all of which were flushed first.
    """
    stop = stop or asyncio.Event()
    step_s = step_s or default_step_s(world.config.progress_interval_s, speed)
    wall_started = _wall_now()
    until = world.now
    paced_from, clock0 = until + fast_forward_s, None
    await sink.start()
    try:
        while not world.finished and not stop.is_set():
            until += step_s  # our own cursor: the world's clock stops at its last event
            if speed > 0 and until > paced_from:
                clock0 = time.monotonic() if clock0 is None else clock0
                delay = clock0 + (until - paced_from) / speed - time.monotonic()
                if delay > 0:
                    try:  # wake early on a stop request
                        await asyncio.wait_for(stop.wait(), delay)
                        break
                    except TimeoutError:
                        pass
            records = world.advance(until)
            await sink.write(records)
            if on_step:
                on_step(world, len(records))
            if speed <= 0 or until <= paced_from:
                await asyncio.sleep(0)  # let the producer's sender and signal handlers run
        await sink.flush()
        manifest = world.manifest(wall_started=wall_started, wall_finished=_wall_now(),
                                  interrupted=stop.is_set(), sink=sink.name)
        await sink.publish_manifest(manifest)
        return manifest
    finally:
        await sink.close()
