"""The Spark Structured Streaming query: Kafka events topic → one lakeFS ingest branch per batch.

Durable checkpoint (``<checkpoint_dir>/<stream_name>``), configurable trigger interval and
``maxOffsetsPerTrigger``. SIGTERM/SIGINT let the running batch finish, then stop the query; a
restart resumes from the checkpoint. While Kafka, lakeFS or MinIO is unreachable — at start or
mid-stream — the stream waits with backoff and resumes from its checkpoint when the service is back
(see ``outage``); past the outage window, and for a missing topic or repository or an unwritable
checkpoint location, it stops with one message naming the setting to fix.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
import urllib.request
from dataclasses import dataclass

from evcharging.settings import Settings
from evcharging.resources.from_settings import lakefs_resource
from evcharging.resources.kafka import list_topics
from evcharging.streaming.batches import IngestBatchWriter
from evcharging.streaming.checkpoint import CheckpointError, CheckpointFiles
from evcharging.streaming.outage import OutageWatch, stream_services
from evcharging.transient import first_line, is_transient, looks_like_connection_error
from simulator.avro import load_schemas

log = logging.getLogger("evcharging.streaming")
# JVM loggers that print a stack trace (or a line per reconnect) for each failure an outage causes;
# the stream reports an outage itself, one line per attempt, and re-raises any other error.
_QUIET_JVM_LOGGERS = ("org.apache.spark.sql.execution.streaming", "org.apache.spark.executor.Executor",
                      "org.apache.spark.scheduler.TaskSetManager", "org.apache.spark.scheduler.TaskSchedulerImpl",
                      "org.apache.kafka", "org.apache.hadoop.fs.s3a", "org.apache.spark.sql.kafka010")


class StreamConfigError(RuntimeError):
    """A dependency of the stream is unreachable or misconfigured."""


@dataclass(frozen=True)
class StreamOptions:
    topic: str
    stream_name: str
    checkpoint: str  # a URI or a local folder (see evcharging.streaming.checkpoint)
    trigger_seconds: int
    max_offsets_per_trigger: int
    available_now: bool = False  # process what is in the topic now, then stop (backfills, tests)

    @classmethod
    def from_settings(cls, s: Settings, stream_name: str | None = None, checkpoint: str | os.PathLike | None = None,
                      **overrides) -> StreamOptions:
        """Options from settings; ``None`` overrides keep the setting. The checkpoint follows the name."""
        name = stream_name or s.stream_name
        checkpoint = str(checkpoint).rstrip("/") if checkpoint else f"{s.checkpoint_dir}/{name}"
        base = dict(topic=s.kafka_events_topic, stream_name=name, checkpoint=checkpoint,
                    trigger_seconds=s.stream_trigger_seconds, max_offsets_per_trigger=s.stream_max_offsets_per_trigger)
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def preflight(s: Settings, options: StreamOptions) -> None:
    """Check Kafka and lakeFS; raise one clear StreamConfigError. (The checkpoint is checked once
    Spark runs: :func:`check_checkpoint`.)"""
    try:
        topics = asyncio.run(asyncio.wait_for(list_topics(s.kafka_bootstrap_servers), 15))
    except Exception as exc:
        raise StreamConfigError(f"Kafka at EVCHARGING_KAFKA_BOOTSTRAP_SERVERS={s.kafka_bootstrap_servers} is "
                                f"unreachable ({type(exc).__name__}: {exc})") from None
    if options.topic not in topics:
        raise StreamConfigError(f"Kafka topic {options.topic!r} (EVCHARGING_KAFKA_EVENTS_TOPIC) does not exist "
                                f"on {s.kafka_bootstrap_servers}")
    try:
        with urllib.request.urlopen(f"{s.lakefs_endpoint}/api/v1/healthcheck", timeout=10):
            pass
        lakefs_resource(s).repo().properties  # noqa: B018 — raises if missing or not authorised
    except Exception as exc:
        raise StreamConfigError(f"lakeFS repository {s.lakefs_repository!r} at EVCHARGING_LAKEFS_ENDPOINT="
                                f"{s.lakefs_endpoint} is not usable ({type(exc).__name__}: {exc})") from None


def check_checkpoint(spark, options: StreamOptions) -> None:
    """Spark can write the checkpoint location (through Hadoop's FileSystem: a folder, s3a://, hdfs://)."""
    try:
        CheckpointFiles(spark, options.checkpoint).check_writable()
    except CheckpointError as exc:
        raise StreamConfigError(f"checkpoint location {options.checkpoint} (EVCHARGING_SPARK_CHECKPOINT_DIR) is not "
                                f"writable: {exc}") from None


def start_query(spark, s: Settings, options: StreamOptions):
    """Define and start the streaming query (returns the StreamingQuery)."""
    records = (spark.readStream.format("kafka")
               .option("kafka.bootstrap.servers", s.kafka_bootstrap_servers)
               .option("subscribe", options.topic)
               .option("startingOffsets", "earliest")
               .option("maxOffsetsPerTrigger", options.max_offsets_per_trigger)
               .load())
    schemas = load_schemas(*[d for d in (s.avro_schemas_dir,) if d])  # the Avro writers the stream can read
    writer = IngestBatchWriter(lakefs_resource(s), options.stream_name, options.topic, options.checkpoint, schemas)
    stream = (records.writeStream.queryName(f"ingest-{options.stream_name}")
              .option("checkpointLocation", options.checkpoint)
              .foreachBatch(writer))
    stream = (stream.trigger(availableNow=True) if options.available_now
              else stream.trigger(processingTime=f"{options.trigger_seconds} seconds"))
    return stream.start()


class _TransientCallbackErrors(logging.Filter):
    """py4j logs the whole traceback of an error the batch function raised before it hands the error
    to the query; an outage's is reported by the stream itself, one line per attempt. Others stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[1] and is_transient(record.exc_info[1]))


def _quiet_outage_noise(spark) -> None:
    jvm = spark._jvm
    for name in _QUIET_JVM_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, jvm.org.apache.logging.log4j.Level.OFF)
    # The lakeFS SDK's own retries, a line each. Its client resets the level of "urllib3" to WARNING
    # whenever one is made, so the level goes on the logger that writes them.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    logging.getLogger("py4j").setLevel(logging.WARNING)  # a line per callback otherwise
    logging.getLogger("py4j.clientserver").addFilter(_TransientCallbackErrors())


def _supervise(query, stop: threading.Event, watch: OutageWatch, drain_timeout: float):
    """Wait for the query to end (or ``stop``); returns its exception, if any. Progress after a
    restart ends the outage ``watch`` was tracking."""
    from pyspark.errors import StreamingQueryException

    while query.isActive and not stop.is_set():
        try:
            query.awaitTermination(1)
        except StreamingQueryException as failed:
            return failed
        if watch.began is not None and query.lastProgress is not None:
            watch.over()
    if query.isActive:  # asked to stop: let the running batch finish first
        log.info("stopping: waiting for the running batch to finish")
        deadline = time.monotonic() + drain_timeout
        while query.status["isTriggerActive"] and time.monotonic() < deadline:
            time.sleep(0.2)
        query.stop()
    return query.exception()


def run(s: Settings, options: StreamOptions, drain_timeout: float = 300) -> None:
    """Run until stopped (or, with ``available_now``, until the topic is drained), waiting out
    outages of Kafka, lakeFS and MinIO shorter than the window."""
    from evcharging.resources.spark import build_spark_session, long_lived_driver

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    watch = OutageWatch(stream_services(s), s.stream_outage_window_seconds, sleep=stop.wait)
    if watch.down():
        watch.wait_until_up("at start")
    preflight(s, options)
    spark = build_spark_session(s, f"evcharging-stream-{options.stream_name}", long_lived_driver(s))
    spark.sparkContext.setLogLevel("WARN")
    _quiet_outage_noise(spark)
    try:
        check_checkpoint(spark, options)
        while not stop.is_set():
            query = start_query(spark, s, options)
            log.info("stream %s: %s → lakeFS %s, checkpoint %s", options.stream_name, options.topic,
                     s.lakefs_repository, options.checkpoint)
            error = _supervise(query, stop, watch, drain_timeout)
            if error is None:
                return
            cause = first_line(str(error), type(error).__name__)
            if not looks_like_connection_error(str(error)) and watch.down() is None:
                raise error
            watch.wait_until_up(cause)
    finally:
        spark.stop()
