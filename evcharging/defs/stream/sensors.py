"""Observations of the Kafka events topic: end offsets, events per second and the stream's lag.

A sensor rather than an observable source asset, because the topic is also materialized (by a
simulator run). Its cursor keeps the last ingest tag read and the stream's positions, so each
evaluation reads only the ingest commits made since the previous one.
"""

import time

import dagster as dg

from evcharging.defs.stream.assets import KAFKA_EVENTS
from evcharging.resources.kafka import KafkaResource
from evcharging.resources.lakefs import LakeFSResource
from evcharging.settings import load_settings
from evcharging.stream_observe import (
    ObserverState, consumer_lag, events_per_second, offsets_table, stream_positions, topic_offsets,
)


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def kafka_topic_observer(context: dg.SensorEvaluationContext, kafka: KafkaResource,
                         lakefs: LakeFSResource) -> dg.SensorResult:
    """Record an observation of the events topic: per-partition end offsets, events/s, consumer lag."""
    previous = ObserverState.from_cursor(context.cursor)
    now = time.time()
    offsets = topic_offsets(kafka.bootstrap_servers, kafka.events_topic)
    stream = load_settings().stream_name
    positions, tag = stream_positions(lakefs, stream, previous.tag, previous.positions)
    lag = consumer_lag(offsets, positions)
    rate = events_per_second(previous, offsets.produced, now)
    metadata = {
        "topic": kafka.events_topic,
        "records": offsets.records,
        "end_offset_total": offsets.produced,
        "consumer_lag": sum(lag.values()),
        "partitions": dg.MetadataValue.md(offsets_table(offsets, positions)),
        "stream": stream,
        "stream_last_ingest_tag": tag or "none yet",
        **({"events_per_second": dg.MetadataValue.float(rate)} if rate is not None else {}),
    }
    state = ObserverState(tag=tag, positions=positions, produced=offsets.produced, at=now)
    return dg.SensorResult(asset_events=[dg.AssetObservation(asset_key=KAFKA_EVENTS, metadata=metadata)],
                           cursor=state.to_cursor())
