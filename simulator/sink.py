"""Where the records go: Kafka (aiokafka), a JSON-lines file, or nowhere (measuring the simulation).

All sinks take whole lists of already-encoded records, so the hot path never awaits per event.
The Kafka sink fills one aiokafka batch per partition itself and hands full batches to
`send_batch`, which skips the per-message future that `send()` would create.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Protocol

from simulator.events import RunManifest
from simulator.session import Record


class Sink(Protocol):
    """The interface every sink implements; `name` goes into the manifest."""

    name: str

    async def start(self) -> None: ...
    async def write(self, records: list[Record]) -> None: ...
    async def flush(self) -> None: ...
    async def publish_manifest(self, manifest: RunManifest) -> None: ...
    async def close(self) -> None: ...


class NullSink:
    """Counts and drops: what is left is the simulation's own cost."""

    name = "null"

    def __init__(self) -> None:
        self.records = 0
        self.manifest: RunManifest | None = None

    async def start(self) -> None:
        pass

    async def write(self, records: list[Record]) -> None:
        self.records += len(records)

    async def flush(self) -> None:
        pass

    async def publish_manifest(self, manifest: RunManifest) -> None:
        self.manifest = manifest

    async def close(self) -> None:
        pass


class FileSink:
    """One JSON event per line; the manifest goes to `manifest_path` (default: beside the file)."""

    name = "file"

    def __init__(self, path: str | Path, manifest_path: str | Path | None = None) -> None:
        self.path = Path(path)
        self.manifest_path = Path(manifest_path) if manifest_path else default_manifest_path(self.path)
        self._file = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb", buffering=1 << 20)  # noqa: SIM115 (closed in close())

    async def write(self, records: list[Record]) -> None:
        if records:
            self._file.write(b"\n".join([value for _, value in records]))
            self._file.write(b"\n")

    async def flush(self) -> None:
        self._file.flush()

    async def publish_manifest(self, manifest: RunManifest) -> None:
        write_manifest(manifest, self.manifest_path)

    async def close(self) -> None:
        if self._file:
            self._file.close()


def default_manifest_path(events_path: Path) -> Path:
    return events_path.with_name(events_path.name + ".manifest.json")


def write_manifest(manifest: RunManifest, path: str | Path) -> None:
    """Write atomically, so a reader never sees half a manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(manifest.to_json() + "\n")
    tmp.replace(path)


def kafka_compression() -> str:
    """The codec for the events topic: zstd when aiokafka has cramjam, else gzip (always there).

    aiokafka 0.14 compresses lz4 at level 9 (LZ4HC) with no way to lower it: measured on event
    batches, ~110 MB/s against ~1,000 MB/s for its zstd (level 3) at over twice the ratio; gzip
    (level 9, pure zlib) manages ~30 MB/s and caps the sink at ~30,000 events/s.
    """
    from aiokafka.codec import has_zstd

    return "zstd" if has_zstd() else "gzip"


async def create_topics(bootstrap_servers: str, partitions: dict[str, int]) -> None:
    """Create topics (name -> partition count) with replication factor 1: for tests, benchmarks
    and dry runs against a local broker; the stack creates the real ones."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=n, replication_factor=1)
                                   for name, n in partitions.items()])
    finally:
        await admin.close()


class KafkaSink:
    """Idempotent, acks=all, compressed; a session's events share a key, hence a partition and
    their order. Partitions are chosen with Kafka's default (murmur2) partitioner."""

    name = "kafka"
    _KEY_CACHE_LIMIT = 200_000  # keys of live sessions; cleared wholesale when it grows past this

    def __init__(self, bootstrap_servers: str, events_topic: str, manifests_topic: str, *,
                 linger_ms: int = 20, max_batch_size: int = 512 * 1024,
                 compression_type: str | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.events_topic = events_topic
        self.manifests_topic = manifests_topic
        self.linger_ms = linger_ms
        self.max_batch_size = max_batch_size
        self.compression_type = compression_type or kafka_compression()
        self._producer = None
        self._partitions: list[int] = []
        self._batches: dict[int, object] = {}
        self._partition_of: dict[bytes, int] = {}
        self._pending: set[asyncio.Future] = set()
        self._error: BaseException | None = None
        self._partitioner = None
        self.last_offsets: dict[int, int] = {}  # partition -> offset of the last acknowledged event

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError
        from aiokafka.partitioner import DefaultPartitioner

        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, enable_idempotence=True, acks="all",
            compression_type=self.compression_type, linger_ms=self.linger_ms,
            max_batch_size=self.max_batch_size, request_timeout_ms=60_000)
        try:
            await self._producer.start()
            partitions = await self._producer.partitions_for(self.events_topic)
        except KafkaError as exc:
            partitions, error = None, exc
        else:
            error = None
        if not partitions:
            await self._producer.stop()
            raise ConnectionError(
                f"Kafka at {self.bootstrap_servers} is unreachable or has no topic {self.events_topic!r}"
                f"{f': {error}' if error else ''}. "
                "Check EVCHARGING_KAFKA_BOOTSTRAP_SERVERS / EVCHARGING_KAFKA_EVENTS_TOPIC.") from error
        self._partitions = sorted(partitions)
        self._partitioner = DefaultPartitioner()

    def _partition(self, key: bytes) -> int:
        partition = self._partition_of.get(key)
        if partition is None:
            if len(self._partition_of) >= self._KEY_CACHE_LIMIT:
                self._partition_of.clear()
            partition = self._partitioner(key, self._partitions, self._partitions)
            self._partition_of[key] = partition
        return partition

    async def write(self, records: list[Record]) -> None:
        batches, partition_of, partition = self._batches, self._partition_of, self._partition
        for key, value in records:
            p = partition_of.get(key)
            if p is None:
                p = partition(key)
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = self._producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                await self._send(p)
                batch = batches[p] = self._producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)

    async def _send(self, partition: int) -> None:
        batch = self._batches.pop(partition)
        batch.close()
        records = batch.record_count()
        future = await self._producer.send_batch(batch, self.events_topic, partition=partition)
        self._pending.add(future)
        future.add_done_callback(lambda f: self._delivered(f, records))
        if self._error is not None:
            raise self._error

    def _delivered(self, future: asyncio.Future, records: int) -> None:
        self._pending.discard(future)
        if future.cancelled():
            return
        if future.exception() is not None:
            self._error = self._error or future.exception()  # raised by the next send or flush
            return
        sent = future.result()  # the batch's first offset
        last = sent.offset + records - 1
        self.last_offsets[sent.partition] = max(last, self.last_offsets.get(sent.partition, -1))

    async def flush(self) -> None:
        """Send every partial batch and wait until the broker acknowledged everything."""
        for partition in list(self._batches):
            await self._send(partition)
        if self._pending:
            await asyncio.gather(*list(self._pending))  # raises the first delivery error
        await self._producer.flush()
        if self._error is not None:
            raise self._error

    async def publish_manifest(self, manifest: RunManifest) -> None:
        manifest.kafka_last_offsets = {str(p): o for p, o in sorted(self.last_offsets.items())}
        await self._producer.send_and_wait(self.manifests_topic, manifest.to_json().encode(),
                                           key=manifest.run_id.encode())

    async def close(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
