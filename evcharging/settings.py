"""Every endpoint, credential, port and path of the project, read from the environment.

Variables are prefixed ``EVCHARGING_`` (``EVCHARGING_KAFKA_BOOTSTRAP_SERVERS`` …); a ``.env`` file in
the working directory is read too. Defaults describe the native local stack on 127.0.0.1.

Secrets have no default. On a developer machine ``evcharging stack up`` generates them once into
``<data_dir>/secrets.env`` (outside git); :func:`load_settings` exports that file into the process
environment (without overriding anything already set), so Dagster's ``EnvVar`` finds them as well.
In production the orchestrator sets them and no such file exists.
"""

from __future__ import annotations

import os
import re
import secrets
import string
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "EVCHARGING_"
PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRETS_FILE_NAME = "secrets.env"

# The secret settings, with how a fresh local value is generated for each.
_ALNUM = string.ascii_letters + string.digits


def _token(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


LOCAL_SECRET_GENERATORS = {
    "minio_root_password": lambda: _token(32),
    # lakeFS keys follow the AWS shapes (20-char id starting with AKIA, 40-char secret) because
    # S3 clients talking to its gateway validate them that way.
    "lakefs_access_key_id": lambda: "AKIAEVC" + _token(13, string.ascii_uppercase + string.digits),
    "lakefs_secret_access_key": lambda: _token(40),
    "lakefs_encrypt_secret": lambda: _token(48),
    "postgres_password": lambda: _token(32),
}


class MissingSettingError(RuntimeError):
    """A setting the caller needs is not configured."""


class Settings(BaseSettings):
    """The project's configuration. Field ``foo_bar`` is variable ``EVCHARGING_FOO_BAR``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    # --- where things live -------------------------------------------------------------------
    data_dir: Path = Field(PROJECT_DIR / ".evcharging", description="Local state: service data, logs, pids, secrets.")
    cache_dir: Path = Field(Path.home() / ".cache" / "evcharging", description="Built binaries and jars, keyed by version.")

    # --- Kafka -----------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "", description="Kafka's brokers, comma-separated; unset = the local stack's: 127.0.0.1:9092 (single mode) or "
                        "three brokers on 127.0.0.1:9092,9094,9096 (cluster mode). The local stack starts one broker "
                        "per address.")
    kafka_controller_port: int = Field(
        9093, description="The first local broker's KRaft controller port; broker i (from 0) takes this + 2·i.")
    kafka_replication_factor: int | None = Field(
        None, ge=1, description="Replicas of each topic the project creates; unset = 3 with three or more brokers in "
                                "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS, else 1. min.insync.replicas is one less (at "
                                "least 1): with acks=all a write survives a broker's loss, and one broker may be down.")
    kafka_events_topic: str = "ev-charging-events"
    kafka_events_partitions: int = 4
    kafka_manifests_topic: str = "ev-run-manifests"
    kafka_events_retention_hours: int = Field(168, description="How long Kafka keeps events (the manifests topic is compacted).")

    # --- MinIO (lakeFS's object store) ---------------------------------------------------------
    minio_endpoint: str = "http://127.0.0.1:9000"
    minio_console_port: int = 9001
    minio_root_user: str = "evcharging"
    minio_root_password: str | None = Field(None, json_schema_extra={"secret": True})
    minio_bucket: str = "lakefs"
    minio_checkpoint_bucket: str = Field(
        "checkpoints", description="MinIO bucket for stream checkpoints on object storage (s3a://<bucket>/…): "
                                   "MinIO's own, not lakeFS's gateway, where writes would sit uncommitted on a branch.")

    # --- lakeFS ------------------------------------------------------------------------------------
    lakefs_endpoint: str = "http://127.0.0.1:8000"
    lakefs_access_key_id: str | None = Field(None, json_schema_extra={"secret": True})
    lakefs_secret_access_key: str | None = Field(None, json_schema_extra={"secret": True})
    lakefs_encrypt_secret: str | None = Field(None, json_schema_extra={"secret": True})
    lakefs_admin_user: str = "admin"
    lakefs_repository: str = "evcharging"
    lakefs_default_branch: str = "main"
    lakefs_memory_mb: int = Field(
        16, description="The local stack's lakeFS: its in-memory SSTable block cache (lakeFS's default is 400 MB).")
    lakefs_local_cache_mb: int = Field(
        90, description="The local stack's lakeFS: its on-disk cache of metadata ranges (lakeFS's default is 1 GB); "
                        "under 100 MB its eviction counters fit the cache.")

    # --- PostgreSQL (the local stack's: FerretDB's backend, lakeFS's metadata) -----------------------
    postgres_port: int = 54329
    postgres_user: str = "evcharging"
    postgres_password: str | None = Field(None, json_schema_extra={"secret": True})

    # --- MongoDB wire protocol (FerretDB locally, mongod in production) -------------------------
    mongo_url: str = "mongodb://127.0.0.1:27017/"
    mongo_database: str = "evcharging"

    # --- ClickHouse ------------------------------------------------------------------------------
    clickhouse_url: str | None = Field(None, description="A ClickHouse server (http://user:pass@host:8123); unset = embedded chDB.")
    clickhouse_database: str = "evcharging"
    clickhouse_lakefs_endpoint: str | None = Field(
        None, description="lakeFS's S3 gateway as the ClickHouse server reaches it (it reads the lake's event files "
                          "itself), when not at EVCHARGING_LAKEFS_ENDPOINT; e.g. a hosted ClickHouse.")
    chdb_path: Path | None = Field(None, description="chDB directory; defaults to <data_dir>/chdb.")

    # --- Spark -------------------------------------------------------------------------------------
    stack_mode: Literal["single", "cluster"] = Field(
        "single", description="single: Spark runs local[2] in each driver and Kafka is one broker; cluster: the local "
                              "stack also runs a Spark standalone master and workers, Spark sessions are submitted to "
                              "it, and Kafka is three brokers (topics replicated 3 times, min.insync.replicas 2).")
    spark_master: str | None = Field(
        None, description="Spark master URL; unset = local[2] (single) or the local stack's master (cluster).")
    spark_driver_memory: str = "2g"
    spark_master_port: int = Field(7077, description="The local standalone master's port (cluster mode).")
    spark_master_webui_port: int = Field(
        8080, description="The local master's web UI and /json/ (its workers' UIs take the next ports).")
    spark_workers: int = Field(2, ge=1, description="Standalone workers the local stack starts (cluster mode).")
    spark_worker_cores: int = Field(1, ge=1, description="Cores each local worker offers.")
    spark_worker_memory: str = Field("1g", description="Memory each local worker offers its executors.")
    spark_cores_max: int = Field(
        1, ge=1, description="spark.cores.max of each application on a spark:// master: standalone schedules FIFO and "
                             "by default one application takes every core, so the stream and a sessions pass share.")
    spark_executor_memory: str = Field("512m", description="spark.executor.memory on a spark:// master.")
    spark_checkpoint_dir: str | None = Field(
        None, description="Streaming checkpoints: a folder or a Hadoop URI (s3a://<EVCHARGING_MINIO_CHECKPOINT_BUCKET>/"
                          "checkpoints, hdfs://…); defaults to <data_dir>/checkpoints.")

    # --- the Kafka → lakeFS stream ------------------------------------------------------------
    stream_name: str = Field("events", description="Names the ingest branches and the checkpoint folder.")

    @field_validator("stream_name")
    @classmethod
    def _stream_name_is_one_word(cls, name: str) -> str:
        # Ingest branches and tags are named <prefix>-<stream>-<batch>, found by the prefix
        # "<prefix>-<stream>-": with a dash, stream "events-eu"'s batches would look like "events"'s.
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ValueError("letters, digits and underscores only: with a dash, another stream's ingest "
                             "branches and tags would look like this one's")
        return name

    stream_trigger_seconds: int = 10
    stream_max_offsets_per_trigger: int = 200_000
    avro_schemas_dir: Path | None = Field(
        None, description="Avro writer schemas (charging_event-v<N>.avsc, id N) beyond the repository's: newer "
                          "producers', until a schema registry serves them.")
    stream_outage_window_seconds: float = Field(
        300, description="How long the stream waits, with backoff, for an unreachable Kafka, lakeFS or MinIO before "
                         "it gives up with one message.")

    # --- write-audit-publish ----------------------------------------------------------------------
    audit_max_quarantine_share: float = Field(
        0.05, description="Above this share of quarantined records a batch is not merged (over enough records, below).")
    audit_share_min_rows: int = Field(
        200, description="The quarantine share blocks only a batch of at least this many records: in a smaller one "
                         "a share is no evidence (one bad record of two is 50 %) and only warns.")

    # --- reference data --------------------------------------------------------------------------
    reference_max_rejected_share: float = Field(
        0.1, description="A reference reload is refused when more than this share of its rows is rejected.")
    reference_max_removed_share: float = Field(
        0.1, description="A reference reload is refused when it would remove more than this share of the stored documents.")
    stations_csv: Path | None = Field(None, description="Kaggle stations CSV; unset = synthetic generator.")
    vehicles_csv: Path | None = Field(None, description="Kaggle vehicles CSV; unset = synthetic generator.")

    # --- Dagster ------------------------------------------------------------------------------------
    dagster_url: str = Field("http://127.0.0.1:3000", description="The Dagster UI (served here by `evcharging dev`).")

    # --- retention: state that grows with time (pruned hourly by the prune_history job) ---------
    published_batch_retention_days: float = Field(
        7, description="A published ingest batch keeps its lakeFS tag and its Dagster partition this long; afterwards "
                       "its provenance is its merge commit on main.")
    dagster_run_retention_days: float = Field(
        3, description="Finished Dagster runs (with their event logs) older than this are deleted, except those "
                       "holding an asset's latest materialization.")

    service_log_max_mb: float = Field(
        64, description="The local stack's service logs (<data_dir>/logs) are rotated past this size by the hourly "
                        "prune_history job, which keeps each log and one previous file.")

    # --- simulations launched from Dagster (Pipes) -----------------------------------------------
    simulator_docker_image: str | None = Field(
        None, description="Run them in a container of this image (dagster-docker's PipesDockerClient); unset = a subprocess.")
    simulator_docker_network: str | None = Field(None, description="The Docker network that container joins.")

    # ----------------------------------------------------------------------------------------------
    @model_validator(mode="after")
    def _local_kafka_brokers(self) -> "Settings":
        """Unset brokers mean the local stack's: one in single mode, three in cluster mode."""
        if not self.kafka_bootstrap_servers.strip():
            ports = (9092,) if self.stack_mode == "single" else (9092, 9094, 9096)
            self.kafka_bootstrap_servers = ",".join(f"127.0.0.1:{port}" for port in ports)
        return self

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / SECRETS_FILE_NAME

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def kafka_brokers(self) -> list[str]:
        """The ``host:port`` of each broker in EVCHARGING_KAFKA_BOOTSTRAP_SERVERS."""
        return [b.strip() for b in self.kafka_bootstrap_servers.split(",") if b.strip()]

    @property
    def kafka_replicas(self) -> int:
        """Replicas of each topic the project creates (EVCHARGING_KAFKA_REPLICATION_FACTOR or implied)."""
        return self.kafka_replication_factor or (3 if len(self.kafka_brokers) >= 3 else 1)

    @property
    def spark_master_url(self) -> str:
        """The master Spark sessions use: EVCHARGING_SPARK_MASTER if set, else what the stack mode implies."""
        if self.spark_master:
            return self.spark_master
        return f"spark://127.0.0.1:{self.spark_master_port}" if self.stack_mode == "cluster" else "local[2]"

    @property
    def spark_is_local(self) -> bool:
        """Whether the driver also runs the executors (``local[*]``), rather than planning for a cluster's."""
        return self.spark_master_url.startswith("local")

    @cached_property
    def chdb_dir(self) -> Path:
        return self.chdb_path or self.data_dir / "chdb"

    @cached_property
    def checkpoint_dir(self) -> str:
        """A URI or a local folder, kept as a string: ``Path("s3a://b/c")`` would be ``s3a:/b/c``."""
        return (self.spark_checkpoint_dir or str(self.data_dir / "checkpoints")).rstrip("/")

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    def require(self, name: str) -> str:
        """The value of setting ``name``, or one clear error naming the variable to set."""
        value = getattr(self, name)
        if value in (None, ""):
            raise MissingSettingError(
                f"setting {ENV_PREFIX}{name.upper()} is not set: put it in the environment or .env "
                f"(for the local stack, `evcharging stack up` generates it into {self.secrets_file})"
            )
        return str(value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (no quoting rules needed: we write it ourselves)."""
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


class InvalidSettingError(MissingSettingError):
    """A setting is present but its value cannot be used."""


def _settings(**overrides) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidSettingError(f"invalid setting {problems}") from None


def load_settings(**overrides) -> Settings:
    """Settings from the environment, with the local secrets file exported underneath it."""
    settings = _settings(**overrides)
    for key, value in read_env_file(settings.secrets_file).items():
        os.environ.setdefault(key, value)
    return _settings(**overrides)


def ensure_local_secrets(settings: Settings) -> Settings:
    """Generate the missing secrets once into ``<data_dir>/secrets.env`` (mode 600).

    Returns ``settings`` with every secret filled in (from the environment, the file, or new).
    """
    existing = read_env_file(settings.secrets_file)
    unset = [name for name in LOCAL_SECRET_GENERATORS if getattr(settings, name) in (None, "")]
    key = {name: f"{ENV_PREFIX}{name.upper()}" for name in unset}
    missing = {key[name]: LOCAL_SECRET_GENERATORS[name]() for name in unset if key[name] not in existing}
    if missing:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.secrets_file.touch(mode=0o600, exist_ok=True)
        settings.secrets_file.write_text(
            "# Generated by `evcharging stack up` for the local stack. Never commit this file.\n"
            + "".join(f"{k}={v}\n" for k, v in sorted((existing | missing).items()))
        )
    return settings.model_copy(update={name: (existing | missing)[key[name]] for name in unset})
