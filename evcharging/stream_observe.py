"""The Kafka events topic as seen from outside: end offsets, events per second, the stream's lag.

Plain Python (no Dagster): the observation sensor in ``evcharging/defs/stream/sensors.py`` calls it.
The stream's position is what it committed to lakeFS, not a Kafka consumer group (it has none:
Spark keeps offsets in its checkpoint): each ingest commit records the half-open offset range
``[first, last + 1)`` per partition it read, so per partition the largest end over the stream's
commits is the next offset it will read, and ``end offset - that`` is its lag.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from evcharging.resources.lakefs import LakeFSResource
from evcharging.streaming.batches import META, TAG_PREFIX


@dataclass(frozen=True)
class TopicOffsets:
    """Per partition, the first offset still kept and the offset the next record will get."""

    beginning: dict[int, int]
    end: dict[int, int]

    @property
    def records(self) -> int:
        """Records the topic holds now (what retention kept)."""
        return sum(self.end[p] - self.beginning.get(p, 0) for p in self.end)

    @property
    def produced(self) -> int:
        """Records ever produced to the topic (the sum of end offsets)."""
        return sum(self.end.values())


async def _partitions(bootstrap_servers: str, topic: str) -> list[int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] or not described["partitions"]:
        raise LookupError(f"Kafka topic {topic!r} does not exist on {bootstrap_servers}")
    return sorted(p["partition"] for p in described["partitions"])


async def _topic_offsets(bootstrap_servers: str, topic: str) -> TopicOffsets:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    parts = [TopicPartition(topic, p) for p in await _partitions(bootstrap_servers, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                request_timeout_ms=10_000)
    await consumer.start()
    try:
        begin, end = await consumer.beginning_offsets(parts), await consumer.end_offsets(parts)
        return TopicOffsets({tp.partition: o for tp, o in begin.items()}, {tp.partition: o for tp, o in end.items()})
    finally:
        await consumer.stop()


def topic_offsets(bootstrap_servers: str, topic: str, timeout_s: float = 30) -> TopicOffsets:
    return asyncio.run(asyncio.wait_for(_topic_offsets(bootstrap_servers, topic), timeout_s))


def advance_positions(positions: dict[int, int], commit_offsets: dict[str, list[int]]) -> dict[int, int]:
    """``positions`` moved on by one ingest commit's recorded ranges (a replayed range moves nothing)."""
    moved = dict(positions)
    for partition, (_, end) in commit_offsets.items():
        moved[int(partition)] = max(moved.get(int(partition), 0), int(end))
    return moved


def stream_positions(lakefs: LakeFSResource, stream: str, after: str | None,
                     positions: dict[int, int]) -> tuple[dict[int, int], str | None]:
    """``positions`` advanced by every ingest commit of ``stream`` after tag ``after``; and the last tag."""
    last = after
    for tag in lakefs.repo().tags(prefix=f"{TAG_PREFIX}{stream}-", after=after or None):
        recorded = (tag.get_commit().metadata or {}).get(f"{META}kafka_offsets")
        if recorded:
            positions = advance_positions(positions, json.loads(recorded))
        last = tag.id
    return positions, last


@dataclass(frozen=True)
class ObserverState:
    """What the sensor remembers between observations (its cursor)."""

    tag: str | None = None  # the last ingest tag read
    positions: dict[int, int] = field(default_factory=dict)
    produced: int | None = None  # the topic's summed end offsets at the previous observation
    at: float | None = None  # and when (epoch seconds)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> ObserverState:
        if not cursor:
            return cls()
        raw = json.loads(cursor)
        return cls(raw.get("tag"), {int(p): int(o) for p, o in raw.get("positions", {}).items()},
                   raw.get("produced"), raw.get("at"))

    def to_cursor(self) -> str:
        return json.dumps({"tag": self.tag, "positions": {str(p): o for p, o in self.positions.items()},
                           "produced": self.produced, "at": self.at}, sort_keys=True)


def consumer_lag(offsets: TopicOffsets, positions: dict[int, int]) -> dict[int, int]:
    """Per partition, records produced that the stream has not committed to lakeFS yet. The stream
    starts at the earliest offset, so a partition it never read lags by all the records it keeps."""
    return {p: max(0, end - max(positions.get(p, 0), offsets.beginning.get(p, 0))) for p, end in offsets.end.items()}


def events_per_second(previous: ObserverState, produced: int, now: float) -> float | None:
    """Records produced per second since the previous observation (None for the first one)."""
    if previous.produced is None or previous.at is None or now <= previous.at:
        return None
    return round(max(0, produced - previous.produced) / (now - previous.at), 1)


def offsets_table(offsets: TopicOffsets, positions: dict[int, int]) -> str:
    lag = consumer_lag(offsets, positions)
    rows = [f"| {p} | {offsets.beginning.get(p, 0):,} | {end:,} | {positions.get(p, 0):,} | {lag[p]:,} |"
            for p, end in sorted(offsets.end.items())]
    return "\n".join(["| partition | first kept | end offset | stream position | lag |", "|---:|---:|---:|---:|---:|", *rows])
