"""The Kafka events topic, materialized by a simulator run launched from the UI through Dagster Pipes.

Lineage: the MongoDB reference data → the simulator (this asset's step) → the topic → the
Spark stream (its own process; its ingest commits are the ``ingest_batch`` partitions).
"""

from typing import Literal

import dagster as dg
from pydantic import Field

from evcharging.resources.kafka import KafkaResource
from evcharging.resources.mongo import MongoResource
from evcharging.resources.simulator import SimulatorResource
from evcharging.stream_observe import topic_offsets
from simulator.avro import DEFAULT_KAFKA_ENCODING

KAFKA_EVENTS = dg.AssetKey(["kafka", "ev_charging_events"])
REFERENCE = [dg.AssetKey(["mongodb", "stations"]), dg.AssetKey(["mongodb", "vehicles"])]


class SimulationConfig(dg.Config):
    """One simulator run (the launchpad's config; every field has a default)."""

    vehicles: int = Field(1000, description="Fleet size.")
    hours: float = Field(6.0, description="Simulated hours of arrivals.")
    seed: int | None = Field(None, description="Random seed; default: one derived from the Dagster run id, so "
                                               "each launch is a new simulator run (its events have new ids).")
    speed: float = Field(0.0, description="0 = as fast as possible, else real time × speed.")
    start: str = Field("2026-01-05T06:00:00+00:00", description="Simulated start (ISO-8601, UTC): a morning peak.")
    encoding: Literal["avro", "json"] = Field(DEFAULT_KAFKA_ENCODING, description="Of the events: Avro in Confluent's "
                                              "wire format (measured faster), or JSON; the stream reads both.")


def seed_for_run(run_id: str) -> int:
    return int(run_id.replace("-", "")[:8], 16) % 1_000_000


def simulator_args(config: SimulationConfig, seed: int) -> list[str]:
    return ["--source", "mongodb", "--vehicles", str(config.vehicles), "--duration", str(config.hours),
            "--seed", str(seed), "--speed", str(config.speed), "--start", config.start, "--sink", "kafka",
            "--encoding", config.encoding]


def simulator_env(kafka: KafkaResource, mongo: MongoResource) -> dict[str, str]:
    """The simulator's settings from the resources (not from this process's environment)."""
    return {"EVCHARGING_MONGO_URL": mongo.url, "EVCHARGING_MONGO_DATABASE": mongo.database,
            "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "EVCHARGING_KAFKA_EVENTS_TOPIC": kafka.events_topic,
            "EVCHARGING_KAFKA_MANIFESTS_TOPIC": kafka.manifests_topic}


@dg.multi_asset(
    name="simulator",
    specs=[dg.AssetSpec(
        KAFKA_EVENTS, deps=REFERENCE, group_name="stream", kinds={"kafka"},
        description="The charging events topic (Avro in Confluent's wire format, or JSON; keyed by session): "
                    "every event the SimPy simulator emitted, read by the Spark stream into lakeFS ingest "
                    "branches. Materializing it runs the simulator on the MongoDB stations and vehicles (config: "
                    "vehicles, hours, seed, speed, encoding); its run manifest becomes the metadata. "
                    "Observations (sensor kafka_topic_observer) record the end offset per partition, events per "
                    "second and the stream's lag.")],
)
def simulator_run(context: dg.AssetExecutionContext, config: SimulationConfig, simulator: SimulatorResource,
                  kafka: KafkaResource, mongo: MongoResource) -> dg.MaterializeResult:
    """Run the simulator through Dagster Pipes and record what it appended to the topic."""
    seed = config.seed if config.seed is not None else seed_for_run(context.run_id)
    args = simulator_args(config, seed)
    context.log.info(f"simulator as a {simulator.launcher}: {' '.join(args)} → {kafka.events_topic} "
                     f"on {kafka.bootstrap_servers}")
    reported = simulator.run(context, args, simulator_env(kafka, mongo)).get_materialize_result()
    offsets = topic_offsets(kafka.bootstrap_servers, kafka.events_topic)
    return dg.MaterializeResult(asset_key=KAFKA_EVENTS, metadata={
        **(reported.metadata or {}),
        "dagster/row_count": offsets.records,
        "topic": kafka.events_topic,
        "launcher": simulator.launcher,
        "end_offsets": dg.MetadataValue.json({str(p): end for p, end in sorted(offsets.end.items())}),
    })
