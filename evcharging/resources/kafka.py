"""Kafka: the events topic the simulator produces to and the stream reads."""

from __future__ import annotations

import dagster as dg


async def list_topics(bootstrap_servers: str, request_timeout_ms: int = 5000) -> list[str]:
    """The cluster's topics; also the health probe (a broker that answers lists them)."""
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    # A broker still booting refuses connections; that is expected here, and aiokafka would log each.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=request_timeout_ms)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


async def create_topics(bootstrap_servers: str, partitions_by_topic: dict[str, int]) -> list[str]:
    """Create the topics that do not exist yet (replication 1: one broker locally); returns those created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, num_partitions=n, replication_factor=1)
               for name, n in partitions_by_topic.items() if name not in existing]
        if new:
            await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()


class KafkaResource(dg.ConfigurableResource):
    """A Kafka cluster and the project's topics on it."""

    bootstrap_servers: str = "127.0.0.1:9092"
    events_topic: str = "ev-charging-events"
    manifests_topic: str = "ev-run-manifests"
    events_partitions: int = 4

    async def ensure_topics(self) -> list[str]:
        """Create the project's topics if missing; returns the ones created."""
        return await create_topics(self.bootstrap_servers,
                                   {self.events_topic: self.events_partitions, self.manifests_topic: 1})
