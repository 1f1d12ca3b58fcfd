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


async def cluster_brokers(bootstrap_servers: str, request_timeout_ms: int = 5000) -> list[int]:
    """The ids of the brokers in the cluster's metadata, as the given broker(s) report it: a broker
    that went away drops out once the controllers fence it (``broker.session.timeout.ms``, 9 s)."""
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # as in list_topics: a booting broker refuses
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=request_timeout_ms)
    await admin.start()
    try:
        return sorted(b["node_id"] for b in (await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()


async def create_topics(bootstrap_servers: str, partitions_by_topic: dict[str, int],
                        configs_by_topic: dict[str, dict[str, str]] | None = None,
                        replication_factor: int = 1) -> list[str]:
    """Create the topics that do not exist yet with ``replication_factor`` replicas and their configs,
    and set those configs on the ones that exist; returns the topics created.

    An existing topic keeps its replica count: changing it is a partition reassignment, an operator's
    decision, not something a start-up does behind their back.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    configs_by_topic = configs_by_topic or {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, num_partitions=n, replication_factor=replication_factor,
                        topic_configs=configs_by_topic.get(name, {}))
               for name, n in partitions_by_topic.items() if name not in existing]
        if new:
            await admin.create_topics(new)
        old = [ConfigResource(ConfigResourceType.TOPIC, name, configs=configs_by_topic[name])
               for name in partitions_by_topic if name in existing and configs_by_topic.get(name)]
        if old:
            await admin.alter_configs(old)
        return [t.name for t in new]
    finally:
        await admin.close()


async def topic_partitions(bootstrap_servers: str, topics: list[str]) -> dict[str, list[dict]]:
    """Each topic's partitions in order, as the cluster's metadata has them: ``partition``,
    ``leader``, ``replicas`` and ``isr`` (broker ids)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000)
    await admin.start()
    try:
        return {d["topic"]: sorted(d["partitions"], key=lambda p: p["partition"])
                for d in await admin.describe_topics(topics)}
    finally:
        await admin.close()


class KafkaResource(dg.ConfigurableResource):
    """A Kafka cluster and the project's topics on it."""

    bootstrap_servers: str = "127.0.0.1:9092"
    events_topic: str = "ev-charging-events"
    manifests_topic: str = "ev-run-manifests"
    events_partitions: int = 4
    events_retention_hours: int = 168
    replication_factor: int = 1

    def topic_configs(self) -> dict[str, dict[str, str]]:
        """Retention set explicitly rather than left to the broker's default: events are deleted after
        ``events_retention_hours`` (nothing downstream re-reads them: reconciliation works from recorded
        counts); manifests are compacted, so each run's newest manifest is kept for good.

        With replicas, ``min.insync.replicas`` is one less: the producers write with acks=all, so an
        acknowledged event is on at least two brokers, and the topic still takes writes with one down.
        """
        durability = {"min.insync.replicas": str(max(1, self.replication_factor - 1))}
        return {self.events_topic: {"cleanup.policy": "delete",
                                    "retention.ms": str(self.events_retention_hours * 3_600_000), **durability},
                self.manifests_topic: {"cleanup.policy": "compact", **durability}}

    async def ensure_topics(self) -> list[str]:
        """Create the project's topics if missing and set their retention; returns the ones created."""
        return await create_topics(self.bootstrap_servers,
                                   {self.events_topic: self.events_partitions, self.manifests_topic: 1},
                                   self.topic_configs(), self.replication_factor)
