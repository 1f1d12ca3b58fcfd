"""Kafka's brokers in each stack mode, read from the settings: one broker in single mode, three KRaft
nodes in cluster mode (each a controller voter), topics replicated 3 times with min.insync.replicas 2,
and the stack's own start order waiting for a quorum before the topics are made."""

from __future__ import annotations

import pytest

from evcharging.resources.from_settings import kafka_resource
from evcharging.settings import Settings
from evcharging.stack import stack
from evcharging.stack.services import KafkaService


@pytest.fixture(autouse=True)
def _no_kafka_env(monkeypatch):
    for name in ("BOOTSTRAP_SERVERS", "CONTROLLER_PORT", "REPLICATION_FACTOR"):
        monkeypatch.delenv(f"EVCHARGING_KAFKA_{name}", raising=False)
    monkeypatch.delenv("EVCHARGING_STACK_MODE", raising=False)


def _props(svc: KafkaService, s: Settings) -> dict[str, str]:
    return dict(line.split("=", 1) for line in svc.properties(s))


def test_single_mode_is_one_broker_with_unreplicated_topics(tmp_path):
    s = Settings(data_dir=tmp_path)
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092" and s.kafka_replicas == 1
    [broker] = [svc for svc in stack.services(s) if isinstance(svc, KafkaService)]
    props = _props(broker, s)
    assert broker.name == "kafka" and props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert broker.started_as(s) == "healthy"
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")  # where the single broker always kept its log
    assert kafka_resource(s).topic_configs()[s.kafka_events_topic]["min.insync.replicas"] == "1"


def test_cluster_mode_is_three_voters_with_topics_replicated_three_times(tmp_path):
    s = Settings(data_dir=tmp_path, stack_mode="cluster")
    assert s.kafka_brokers == ["127.0.0.1:9092", "127.0.0.1:9094", "127.0.0.1:9096"] and s.kafka_replicas == 3
    brokers = [svc for svc in stack.services(s) if isinstance(svc, KafkaService)]
    assert [b.name for b in brokers] == ["kafka-1", "kafka-2", "kafka-3"]
    props = [_props(b, s) for b in brokers]
    assert {p["controller.quorum.voters"] for p in props} == {"1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"}
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert [p["listeners"] for p in props][2] == "PLAINTEXT://127.0.0.1:9096,CONTROLLER://127.0.0.1:9097"
    assert len({p["log.dirs"] for p in props}) == 3 and all("kafka-cluster" in p["log.dirs"] for p in props)
    # `up` moves on from the first two once they listen (a quorum needs two), and says so.
    assert [b.started_as(s) for b in brokers] == ["listening", "listening", "healthy"]
    assert {p["min.insync.replicas"] for p in props} == {"2"} and {p["offsets.topic.replication.factor"]
                                                                    for p in props} == {"3"}
    resource = kafka_resource(s)
    assert resource.replication_factor == 3 and resource.bootstrap_servers == ",".join(s.kafka_brokers)
    configs = resource.topic_configs()
    assert configs[s.kafka_events_topic]["min.insync.replicas"] == "2"
    assert configs[s.kafka_manifests_topic]["min.insync.replicas"] == "2"  # the manifests are replicated too
    # Every port is checked free before a start, and a taken one names the setting that moves it.
    assert brokers[1].ports(s) == {9094: "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS",
                                   9095: "EVCHARGING_KAFKA_CONTROLLER_PORT (broker i takes it + 2·i)"}


def test_explicit_brokers_and_replication_win(tmp_path):
    s = Settings(data_dir=tmp_path, stack_mode="cluster", kafka_bootstrap_servers="k1:9092, k2:9092")
    assert s.kafka_brokers == ["k1:9092", "k2:9092"] and s.kafka_replicas == 1  # two brokers: no quorum of 3
    s = Settings(data_dir=tmp_path, kafka_bootstrap_servers="a:1,b:2,c:3,d:4", kafka_replication_factor=2)
    assert s.kafka_replicas == 2


def test_down_finds_brokers_of_the_other_mode(tmp_path):
    single = Settings(data_dir=tmp_path)
    single.run_dir.mkdir(parents=True)
    for name in ("kafka-1", "kafka-2", "kafka-3"):  # left by a cluster-mode `up`
        (single.run_dir / f"{name}.pid").write_text("1 1\n")
    names = [svc.name for svc in stack.services(single, started=True) if isinstance(svc, KafkaService)]
    assert names == ["kafka", "kafka-1", "kafka-2", "kafka-3"]
