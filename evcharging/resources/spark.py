"""Spark: a SparkSession wired to Kafka (spark-sql-kafka) and to lakeFS's S3 gateway (S3A).

The extra jars come from Maven Central into the cache (see ``evcharging.stack.builds``) and are
passed with ``spark.jars``: ``spark.jars.packages`` would make Ivy ask repositories this machine
cannot reach. Secrets are kept out of ``spark_config`` (which Dagster shows in its UI) and merged
in only when the session starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from dagster_pyspark import LazyPySparkResource
from dagster_pyspark.resources import spark_session_from_config
from pydantic import Field

from evcharging.settings import Settings


BATCH_JIT = "-XX:TieredStopAtLevel=1"
LONG_LIVED_JIT = "-XX:+TieredCompilation"  # the JVM's default (C1, then C2), stated


def spark_config(settings: Settings) -> dict[str, str]:
    """Spark properties without secrets: master, memory, and lakeFS's S3 gateway as S3A's endpoint.

    lakeFS is the only S3 the project's Spark talks to, so the settings are S3A-wide: any
    repository (each is a bucket of the gateway) works, not just the configured one.
    """
    gateway = "spark.hadoop.fs.s3a"
    return standalone_config(settings) | {
        "spark.app.name": "evcharging",
        "spark.master": settings.spark_master_url,
        "spark.driver.memory": settings.spark_driver_memory,
        # A batch driver (a sessions pass: a JVM per run) lives a minute or two: C2's compile
        # threads only compete for the cores. C1 alone made a pass of 1.3 M events 38 -> 32 s on
        # 2 cores. The stream's long-lived driver keeps C2 (long_lived_driver replaces this).
        "spark.driver.extraJavaOptions": BATCH_JIT,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # lakeFS's S3 gateway serves the repository as a bucket, branches as the first path part.
        f"{gateway}.endpoint": settings.lakefs_endpoint,
        f"{gateway}.path.style.access": "true",
        f"{gateway}.connection.ssl.enabled": _tls(settings.lakefs_endpoint),
        f"{gateway}.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.sql.parquet.compression.codec": "zstd",
        # INT64 timestamps carry min/max statistics (Spark's default INT96 has none): the audit
        # skips main's files outside a batch's times by them (evcharging/lake/main_ids.py).
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # Every ingest branch would write its own events/_SUCCESS, and merging two of them into
        # main would conflict on that one object: no marker files.
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version": "2",
        # The stream's checkpoint bucket is MinIO's own (S3A's per-bucket settings override the gateway).
        **{f"{_checkpoint_bucket(settings)}.{k}": v for k, v in {
            "endpoint": settings.minio_endpoint,
            "connection.ssl.enabled": _tls(settings.minio_endpoint)}.items()},
    }


def _tls(url: str) -> str:
    """S3A's connection.ssl.enabled for an endpoint URL."""
    return str(urlparse(url).scheme == "https").lower()


def standalone_config(settings: Settings) -> dict[str, str]:
    """On a ``spark://`` master: a share of the cores per application (standalone schedules first in,
    first out, and by default one application takes every core, so the stream would starve a sessions
    pass), modest executors, and executors running the driver's Python."""
    if not settings.spark_master_url.startswith("spark://"):
        return {}
    return {"spark.cores.max": str(settings.spark_cores_max),
            "spark.executor.memory": settings.spark_executor_memory,
            "spark.pyspark.python": sys.executable}


def _checkpoint_bucket(settings: Settings) -> str:
    return f"spark.hadoop.fs.s3a.bucket.{settings.minio_checkpoint_bucket}"


def checkpoint_bucket_keys(settings: Settings) -> dict[str, str]:
    """MinIO's keys for the checkpoint bucket, merged in at session start (none without a password)."""
    if not settings.minio_root_password:
        return {}
    bucket = _checkpoint_bucket(settings)
    return {f"{bucket}.access.key": settings.minio_root_user, f"{bucket}.secret.key": settings.minio_root_password}


def session_extras(access_key_id: str, secret_access_key: str, cache_dir: Path) -> dict[str, str]:
    """What is merged in at session start: the lakeFS keys and the cached jars (resolved if missing)."""
    from evcharging.stack.builds import spark_jars_option

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # what Python workers run, on any executor
    return {
        "spark.jars": spark_jars_option(cache_dir),
        "spark.hadoop.fs.s3a.access.key": access_key_id,
        "spark.hadoop.fs.s3a.secret.key": secret_access_key,
    }


def with_class_archive(config: dict[str, str], cache_dir: Path) -> dict[str, str]:
    """``config`` with the driver mapping the class-data-sharing archive that ``stack install`` wrote
    for this java and these jars (``evcharging.stack.spark_archive``), when there is one."""
    from evcharging.stack.spark_archive import archive_path

    archive = archive_path(cache_dir, config.get("spark.jars", ""))
    if archive is None or not archive.exists():
        return config
    options = f"{config.get('spark.driver.extraJavaOptions', '')} -XX:SharedArchiveFile={archive}".strip()
    return {**config, "spark.driver.extraJavaOptions": options}


def build_spark_session(settings: Settings, app_name: str, conf: dict[str, str] | None = None):
    """A SparkSession for the project (one per process; getOrCreate reuses it), with ``conf`` on top."""
    extras = session_extras(settings.require("lakefs_access_key_id"), settings.require("lakefs_secret_access_key"),
                            settings.cache_dir)
    config = {**spark_config(settings), "spark.app.name": app_name, **extras, **checkpoint_bucket_keys(settings),
              **(conf or {})}
    return spark_session_from_config(with_class_archive(config, settings.cache_dir))


def long_lived_driver(settings: Settings) -> dict[str, str]:
    """A driver that lives as long as its process commits and touches its whole heap at start
    (-Xms = spark.driver.memory), as Kafka's brokers do: its RSS then holds from the first batch
    instead of creeping up while G1 grows the heap (the stream's JVM: 1.50 -> 1.67 GB over a
    45-minute soak). A batch pass starts a JVM per run and keeps the lazily grown heap. Only where
    the driver is also the executor (``local[*]``): on a cluster it only plans, and compose's stream
    container (1.25 GiB, the Python driver beside a 1 GB heap) has no room for a touched heap.
    Either way it keeps the JVM's two JIT compilers (a batch driver has C1 only: ``BATCH_JIT``)."""
    if not settings.spark_is_local:
        return {"spark.driver.extraJavaOptions": LONG_LIVED_JIT}
    return {"spark.driver.extraJavaOptions": f"{LONG_LIVED_JIT} -Xms{settings.spark_driver_memory} -XX:+AlwaysPreTouch"}


class SparkResource(LazyPySparkResource):
    """dagster-pyspark's lazy resource, plus the lakeFS keys and jars merged in at session start."""

    lakefs_access_key_id: str
    lakefs_secret_access_key: str = Field(json_schema_extra={"dagster__is_secret": True})
    cache_dir: str

    def _init_session(self) -> None:
        if self._spark_session is None:
            extras = session_extras(self.lakefs_access_key_id, self.lakefs_secret_access_key, Path(self.cache_dir))
            config = with_class_archive({**self.spark_config, **extras}, Path(self.cache_dir))
            self._spark_session = spark_session_from_config(config)
