"""The services of the native local stack: how each is installed, started, probed and initialised.

Order matters: PostgreSQL before FerretDB (its backend), MinIO before lakeFS (its blockstore).
Spark and chDB are libraries, not servers: they appear in ``status`` with what they use.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from evcharging.resources.from_settings import kafka_resource, lakefs_resource, minio_s3_client
from evcharging.resources.kafka import list_topics
from evcharging.settings import Settings
from evcharging.stack import builds
from evcharging.stack.builds import Progress
from evcharging.stack.process import ManagedProcess, StackError

HOST = "127.0.0.1"


def _port(url_or_hostport: str) -> int:
    if "://" not in url_or_hostport:
        url_or_hostport = "tcp://" + url_or_hostport
    return urlparse(url_or_hostport).port


def _http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _reachable_by(user: str, path: Path) -> bool:
    """Whether ``user`` may traverse every existing folder down to ``path``."""
    pw = pwd.getpwnam(user)
    groups = {g.gr_gid for g in grp.getgrall() if user in g.gr_mem} | {pw.pw_gid}
    for folder in [p for p in [path, *path.parents] if p.exists()]:
        st = folder.stat()
        if st.st_uid == pw.pw_uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


@dataclass
class Service:
    """A server process of the stack. Subclasses fill in the hooks."""

    name: str
    start_timeout: float = 60.0

    def process(self, s: Settings) -> ManagedProcess:
        return ManagedProcess(self.name, s.run_dir / f"{self.name}.pid", s.logs_dir / f"{self.name}.log")

    def ports(self, s: Settings) -> dict[int, str]:
        """Port → the setting that chooses it (named in the 'port taken' message)."""
        raise NotImplementedError

    def endpoint(self, s: Settings) -> str:
        raise NotImplementedError

    def install(self, s: Settings, progress: Progress) -> None:
        """Build or download what the service needs (cached)."""

    def launch(self, s: Settings, proc: ManagedProcess) -> None:
        raise NotImplementedError

    def healthy(self, s: Settings) -> bool:
        raise NotImplementedError

    def initialise(self, s: Settings) -> None:
        """Idempotent set-up once healthy (bucket, repository, topics …)."""


class PostgresService(Service):
    """Debian's PostgreSQL 15 in a data directory of the stack's own: FerretDB's storage."""

    def ports(self, s):
        return {s.postgres_port: "EVCHARGING_POSTGRES_PORT"}

    def endpoint(self, s):
        return f"postgresql://{s.postgres_user}@{HOST}:{s.postgres_port}/ferretdb"

    def _bin(self, tool: str) -> str:
        path = builds.POSTGRES_BIN / tool
        if not path.exists():
            raise StackError(self.name, f"{path} not found: install Debian's postgresql-15 package")
        return str(path)

    def install(self, s, progress):
        self._bin("postgres")

    def _run_as(self) -> str | None:
        # PostgreSQL refuses to run as root; as root we hand its files and process to `postgres`.
        return "postgres" if _running_as_root() else None

    def _home(self, s: Settings) -> Path:
        """Where the cluster lives: ``<data_dir>/postgres``, if the postgres user can reach it.

        As root, PostgreSQL runs as `postgres`, which cannot enter a data directory below a private
        folder (a clone under /root, pytest's tmp): then the cluster lives in postgres's own home,
        keyed by the data directory, and ``<data_dir>/postgres`` is a symlink to it.
        """
        home = s.data_dir / "postgres"
        if not self._run_as() or home.is_symlink() or _reachable_by("postgres", s.data_dir):
            return home.resolve() if home.is_symlink() else home
        digest = hashlib.sha256(str(s.data_dir.resolve()).encode()).hexdigest()[:10]
        target = Path(pwd.getpwnam("postgres").pw_dir) / f"evcharging-{digest}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.chown(target, "postgres", "postgres")
        s.data_dir.mkdir(parents=True, exist_ok=True)
        home.symlink_to(target, target_is_directory=True)
        return target

    def launch(self, s, proc):
        data = self._home(s) / "data"
        if not (data / "PG_VERSION").exists():
            self._initdb(s, data, proc.log_file)
        proc.start([self._bin("postgres"), "-D", str(data), "-p", str(s.postgres_port),
                    "-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories=",
                    "-c", "max_connections=200", "-c", "fsync=off"],  # a dev stack: durability of a laptop
                   run_as=self._run_as())

    def _initdb(self, s: Settings, data: Path, log: Path) -> None:
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        pwfile = data.parent / "initdb.pw"  # not inside: initdb wants its data directory empty
        pwfile.write_text(s.require("postgres_password") + "\n")
        pwfile.chmod(0o600)
        if self._run_as():
            for path in (data.parent, data, pwfile):
                shutil.chown(path, "postgres", "postgres")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            result = subprocess.run(
                [self._bin("initdb"), "-D", str(data), "-U", s.postgres_user, "--pwfile", str(pwfile),
                 "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
                stdout=out, stderr=subprocess.STDOUT, timeout=120,
                **({"user": "postgres", "group": "postgres", "extra_groups": []} if self._run_as() else {}))
        pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(self.name, f"initdb failed (exit {result.returncode})", log)

    def _psql(self, s: Settings, sql: str) -> str:
        out = subprocess.run(
            [self._bin("psql"), "-h", HOST, "-p", str(s.postgres_port), "-U", s.postgres_user, "-d", "postgres",
             "-tAc", sql], capture_output=True, text=True, timeout=30,
            env={**os.environ, "PGPASSWORD": s.require("postgres_password")})
        if out.returncode != 0:
            raise StackError(self.name, f"psql failed: {out.stderr.strip()}", self.process(s).log_file)
        return out.stdout.strip()

    def healthy(self, s):
        return self._psql(s, "SELECT 1") == "1"

    def initialise(self, s):
        if self._psql(s, "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'") != "1":
            self._psql(s, "CREATE DATABASE ferretdb")


class FerretDBService(Service):
    """FerretDB v1 (patched) speaking the MongoDB wire protocol on top of PostgreSQL."""

    def ports(self, s):
        return {_port(s.mongo_url): "EVCHARGING_MONGO_URL"}

    def endpoint(self, s):
        return s.mongo_url

    def install(self, s, progress):
        builds.ferretdb_binary(s.cache_dir, progress)

    def launch(self, s, proc):
        state = s.data_dir / "ferretdb"
        state.mkdir(parents=True, exist_ok=True)
        pg_url = f"postgres://{s.postgres_user}:{s.require('postgres_password')}@{HOST}:{s.postgres_port}/ferretdb"
        proc.start([str(builds.ferretdb_binary(s.cache_dir)),
                    f"--listen-addr={HOST}:{_port(s.mongo_url)}", "--handler=pg", f"--state-dir={state}",
                    "--telemetry=disable", "--debug-addr=-", "--log-level=warn"],
                   env={"FERRETDB_POSTGRESQL_URL": pg_url})  # env, not argv: keeps the password out of `ps`

    def healthy(self, s):
        from pymongo import MongoClient

        with MongoClient(s.mongo_url, serverSelectionTimeoutMS=1000) as client:
            return client.admin.command("ping").get("ok") == 1


class MinioService(Service):
    """MinIO, the object store under lakeFS."""

    def ports(self, s):
        return {_port(s.minio_endpoint): "EVCHARGING_MINIO_ENDPOINT", s.minio_console_port: "EVCHARGING_MINIO_CONSOLE_PORT"}

    def endpoint(self, s):
        return f"{s.minio_endpoint} (console http://{HOST}:{s.minio_console_port}, bucket {s.minio_bucket})"

    def install(self, s, progress):
        builds.minio_binary(s.cache_dir, progress)

    def launch(self, s, proc):
        data = s.data_dir / "minio"
        data.mkdir(parents=True, exist_ok=True)
        proc.start([str(builds.minio_binary(s.cache_dir)), "server", str(data), "--quiet",
                    "--address", f"{HOST}:{_port(s.minio_endpoint)}",
                    "--console-address", f"{HOST}:{s.minio_console_port}"],
                   env={"MINIO_ROOT_USER": s.minio_root_user, "MINIO_ROOT_PASSWORD": s.require("minio_root_password"),
                        "MINIO_UPDATE": "off"})

    def healthy(self, s):
        return _http_status(f"{s.minio_endpoint}/minio/health/live") == 200

    def initialise(self, s):
        client = minio_s3_client(s)
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in (s.minio_bucket, s.minio_checkpoint_bucket):
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)




class LakeFSService(Service):
    """lakeFS with local KV metadata and its objects in the MinIO bucket."""

    def ports(self, s):
        return {_port(s.lakefs_endpoint): "EVCHARGING_LAKEFS_ENDPOINT"}

    def endpoint(self, s):
        return f"{s.lakefs_endpoint} (repository {s.lakefs_repository}, UI login = the lakeFS access key)"

    def install(self, s, progress):
        builds.lakefs_binary(s.cache_dir, progress)

    def launch(self, s, proc):
        home = s.data_dir / "lakefs"
        home.mkdir(parents=True, exist_ok=True)
        config = home / "config.yaml"
        # No secrets in this file: they travel as LAKEFS_* environment variables below.
        config.write_text(
            f"listen_address: {HOST}:{_port(s.lakefs_endpoint)}\n"
            f"database:\n  type: local\n  local:\n    path: {home / 'metadata'}\n"
            "blockstore:\n  type: s3\n  s3:\n"
            f"    endpoint: {s.minio_endpoint}\n    force_path_style: true\n    region: us-east-1\n"
            "stats:\n  enabled: false\n"
            "security:\n  check_latest_version: false\n"
            "logging:\n  level: WARN\n"
            # The block cache of committed metadata fills up to its cap over hours (400 MB by default, the
            # RSS of a 2-hour soak tripled); on a 2-core demo machine a smaller cap serves a stream's merges.
            # No GOMEMLIMIT: with the heap at such a limit the GC ran all the time (11 % of lakeFS's CPU,
            # up to a core under load) and the aged benchmark's lakeFS steps got 10× slower.
            f"committed:\n  sstable:\n    memory:\n      cache_size_bytes: {s.lakefs_memory_mb * 1_000_000}\n"
        )
        proc.start([str(builds.lakefs_binary(s.cache_dir)), "run", "--config", str(config)], cwd=home, env={
            "LAKEFS_AUTH_ENCRYPT_SECRET_KEY": s.require("lakefs_encrypt_secret"),
            "LAKEFS_BLOCKSTORE_S3_CREDENTIALS_ACCESS_KEY_ID": s.minio_root_user,
            "LAKEFS_BLOCKSTORE_S3_CREDENTIALS_SECRET_ACCESS_KEY": s.require("minio_root_password"),
            # Creates the admin user with these keys on first start (no interactive setup).
            "LAKEFS_INSTALLATION_USER_NAME": s.lakefs_admin_user,
            "LAKEFS_INSTALLATION_ACCESS_KEY_ID": s.require("lakefs_access_key_id"),
            "LAKEFS_INSTALLATION_SECRET_ACCESS_KEY": s.require("lakefs_secret_access_key"),
        })

    def healthy(self, s):
        return _http_status(f"{s.lakefs_endpoint}/api/v1/healthcheck") == 204

    def initialise(self, s):
        lakefs_resource(s).ensure_repository(f"s3://{s.minio_bucket}/{s.lakefs_repository}")




class KafkaService(Service):
    """A single-node Kafka 4 broker in KRaft mode (broker and controller in one JVM)."""

    def ports(self, s):
        return {_port(s.kafka_bootstrap_servers): "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS",
                s.kafka_controller_port: "EVCHARGING_KAFKA_CONTROLLER_PORT"}

    def endpoint(self, s):
        return f"{s.kafka_bootstrap_servers} (topics {s.kafka_events_topic}, {s.kafka_manifests_topic})"

    def install(self, s, progress):
        builds.kafka_libs(s.cache_dir, progress)

    def _java(self, s: Settings, main: str, *args: str, heap: str = "256m") -> list[str]:
        java = shutil.which("java", path=f"{os.environ.get('JAVA_HOME', '')}/bin:{os.environ.get('PATH', '')}")
        if not java:
            raise StackError(self.name, "no `java` on PATH (Java 17 is needed)")
        libs = builds.kafka_libs(s.cache_dir)
        log4j = builds.NATIVE_DIR / "kafka" / "log4j2.properties"
        return [java, f"-Xmx{heap}", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*", main, *args]

    def launch(self, s, proc):
        home = s.data_dir / "kafka"
        home.mkdir(parents=True, exist_ok=True)
        port, controller = _port(s.kafka_bootstrap_servers), s.kafka_controller_port
        props = home / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@{HOST}:{controller}",
            f"listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller}",
            f"advertised.listeners=PLAINTEXT://{HOST}:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={home / 'data'}",
            "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1", "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1", "group.initial.rebalance.delay.ms=0",
            "num.network.threads=2", "num.io.threads=2", "num.partitions=1", "auto.create.topics.enable=false",
        ]) + "\n")
        if not (home / "data" / "meta.properties").exists():
            cluster_id = subprocess.run(self._java(s, "kafka.tools.StorageTool", "random-uuid"),
                                        capture_output=True, text=True, timeout=120).stdout.strip()
            fmt = subprocess.run(self._java(s, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                                            "--ignore-formatted"), capture_output=True, text=True, timeout=120)
            if fmt.returncode != 0:
                proc.log_file.parent.mkdir(parents=True, exist_ok=True)
                proc.log_file.write_text(fmt.stdout + fmt.stderr)
                raise StackError(self.name, "formatting the KRaft storage failed", proc.log_file)
        proc.start(self._java(s, "kafka.Kafka", str(props), heap="1g"), cwd=home)

    def healthy(self, s):
        return asyncio.run(asyncio.wait_for(list_topics(s.kafka_bootstrap_servers, 3000), 10)) is not None

    def initialise(self, s):
        asyncio.run(kafka_resource(s).ensure_topics())




SERVICES: list[Service] = [
    PostgresService("postgres", start_timeout=60),
    FerretDBService("ferretdb", start_timeout=60),
    MinioService("minio", start_timeout=90),
    LakeFSService("lakefs", start_timeout=90),
    KafkaService("kafka", start_timeout=120),
]
