"""The services of the native local stack: how each is installed, started, probed and initialised.

Order matters: PostgreSQL before FerretDB and lakeFS (their backend), MinIO before lakeFS (its blockstore).
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
from evcharging.resources.kafka import cluster_brokers
from evcharging.settings import Settings
from evcharging.stack import builds
from evcharging.stack.builds import Progress
from evcharging.stack.process import ManagedProcess, StackError, port_open

HOST = "127.0.0.1"
BROKER_HEAP = "512m"  # per Kafka broker, single or cluster mode
LAKEFS_DATABASE = "lakefs"  # lakeFS's key-value store in the stack's PostgreSQL, as in compose


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

    def started(self, s: Settings) -> bool:
        """Far enough up for the next service to start (``up`` checks every one healthy at the end)."""
        return self.healthy(s)

    def started_as(self, s: Settings) -> str:
        """What ``started`` means for this service, as ``up`` reports it."""
        return "healthy"

    def initialise(self, s: Settings) -> None:
        """Idempotent set-up once healthy (bucket, repository, topics …)."""


class PostgresService(Service):
    """Debian's PostgreSQL 15 in a data directory of the stack's own: FerretDB's storage and lakeFS's
    metadata (two databases)."""

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

    def psql(self, s: Settings, sql: str, database: str = "postgres") -> str:
        """``sql``'s result, unaligned, one row per line."""
        out = subprocess.run(
            [self._bin("psql"), "-h", HOST, "-p", str(s.postgres_port), "-U", s.postgres_user, "-d", database,
             "-tAc", sql], capture_output=True, text=True, timeout=30,
            env={**os.environ, "PGPASSWORD": s.require("postgres_password")})
        if out.returncode != 0:
            raise StackError(self.name, f"psql failed: {out.stderr.strip()}", self.process(s).log_file)
        return out.stdout.strip()

    def healthy(self, s):
        return self.psql(s, "SELECT 1") == "1"

    def initialise(self, s):
        for database in ("ferretdb", LAKEFS_DATABASE):
            if self.psql(s, f"SELECT 1 FROM pg_database WHERE datname = '{database}'") != "1":
                self.psql(s, f"CREATE DATABASE {database}")


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
    """lakeFS with its metadata in the stack's PostgreSQL and its objects in the MinIO bucket."""

    def ports(self, s):
        return {_port(s.lakefs_endpoint): "EVCHARGING_LAKEFS_ENDPOINT"}

    @staticmethod
    def _home(s: Settings) -> Path:
        return s.data_dir / "lakefs"

    def _local_kv(self, s: Settings) -> Path | None:
        """The Badger store of a stack started before lakeFS moved to PostgreSQL: that stack keeps it
        (its repository's commits and branches live there; a new KV would not know them)."""
        path = self._home(s) / "metadata"
        return path if path.exists() else None

    def endpoint(self, s):
        local_kv = self._local_kv(s)
        kv = (f"metadata in its local KV {local_kv}, from an earlier stack" if local_kv
              else f"metadata in PostgreSQL database {LAKEFS_DATABASE}")
        return f"{s.lakefs_endpoint} (repository {s.lakefs_repository}, {kv}, UI login = the lakeFS access key)"

    def install(self, s, progress):
        builds.lakefs_binary(s.cache_dir, progress)

    def launch(self, s, proc):
        home = self._home(s)
        home.mkdir(parents=True, exist_ok=True)
        config = home / "config.yaml"
        local_kv = self._local_kv(s)
        # PostgreSQL, as compose runs it: the local KV (Badger, whose options lakeFS does not expose)
        # held 83 MB of memtables and grew lakeFS's RSS by half over the 2-hour soak.
        database = (f"database:\n  type: local\n  local:\n    path: {local_kv}\n" if local_kv
                    else "database:\n  type: postgres\n")
        # No secrets in this file: they travel as LAKEFS_* environment variables below.
        config.write_text(
            f"listen_address: {HOST}:{_port(s.lakefs_endpoint)}\n"
            + database +
            "blockstore:\n  type: s3\n  s3:\n"
            f"    endpoint: {s.minio_endpoint}\n    force_path_style: true\n    region: us-east-1\n"
            "stats:\n  enabled: false\n"
            "security:\n  check_latest_version: false\n"
            "logging:\n  level: WARN\n"
            # The block cache of committed metadata fills up to its cap as main's history grows (400 MB by
            # default: the RSS of a 2-hour soak tripled). Go's collector lets the RSS reach about twice
            # what the caches hold (GOGC below); with 16 MB lakeFS merged a stream's batches as fast as
            # with 64 MB and levelled off at half the RSS.
            f"committed:\n  sstable:\n    memory:\n      cache_size_bytes: {s.lakefs_memory_mb * 1_000_000}\n"
            # The on-disk cache of metaranges lives with the stack (lakeFS's default is ~/lakefs, shared
            # by every stack on the machine and never cleaned). Under 100 MB, lakeFS sizes its eviction
            # counters to the cache; from 100 MB on it allocates 10 M of them (~96 MB of heap) per cache.
            f"  local_cache:\n    dir: {home / 'cache'}\n    size_bytes: {s.lakefs_local_cache_mb * 1_000_000}\n"
        )
        env = {
            # A collection at 1.5× the live heap, not 2×: 20 % less RSS in the same publish cycles. Not
            # GOMEMLIMIT: with the heap at such a limit the GC ran all the time (11 % of lakeFS's CPU, up
            # to a core under load) and the aged benchmark's lakeFS steps got 10× slower.
            "GOGC": "50",
            "LAKEFS_AUTH_ENCRYPT_SECRET_KEY": s.require("lakefs_encrypt_secret"),
            "LAKEFS_BLOCKSTORE_S3_CREDENTIALS_ACCESS_KEY_ID": s.minio_root_user,
            "LAKEFS_BLOCKSTORE_S3_CREDENTIALS_SECRET_ACCESS_KEY": s.require("minio_root_password"),
        }
        if local_kv:  # lakeFS sets its admin up from these itself, on a local KV only
            env |= {"LAKEFS_INSTALLATION_USER_NAME": s.lakefs_admin_user,
                    "LAKEFS_INSTALLATION_ACCESS_KEY_ID": s.require("lakefs_access_key_id"),
                    "LAKEFS_INSTALLATION_SECRET_ACCESS_KEY": s.require("lakefs_secret_access_key")}
        else:  # on PostgreSQL `initialise` sets the admin up
            env["LAKEFS_DATABASE_POSTGRES_CONNECTION_STRING"] = (
                f"postgres://{s.postgres_user}:{s.require('postgres_password')}@{HOST}:{s.postgres_port}"
                f"/{LAKEFS_DATABASE}?sslmode=disable")
        proc.start([str(builds.lakefs_binary(s.cache_dir)), "run", "--config", str(config)], cwd=home, env=env)

    def healthy(self, s):
        return _http_status(f"{s.lakefs_endpoint}/api/v1/healthcheck") == 204

    def initialise(self, s):
        lakefs = lakefs_resource(s)
        lakefs.ensure_admin(s.lakefs_admin_user)
        lakefs.ensure_repository(f"s3://{s.minio_bucket}/{s.lakefs_repository}")




@dataclass
class KafkaService(Service):
    """Kafka 4 broker ``node`` (from 0) in KRaft mode, broker and controller in one JVM.

    The local stack starts one broker per address in EVCHARGING_KAFKA_BOOTSTRAP_SERVERS: one in
    single mode ("kafka", data in ``<data_dir>/kafka``), three in cluster mode ("kafka-1" … "kafka-3",
    data in ``<data_dir>/kafka-cluster/node-<n>``: a separate log, not the single broker's). All of a
    cluster's nodes are controller voters, so the metadata quorum survives one of three going away.
    """

    node: int = 0

    def _address(self, s: Settings) -> tuple[str, int, int]:
        """(host, broker port, controller port) of this node."""
        broker = s.kafka_brokers[self.node]
        return HOST, _port(broker), s.kafka_controller_port + 2 * self.node

    def _home(self, s: Settings) -> Path:
        return s.data_dir / "kafka" if len(s.kafka_brokers) == 1 else s.data_dir / "kafka-cluster" / f"node-{self.node + 1}"

    def ports(self, s):
        _, port, controller = self._address(s)
        return {port: "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS",
                controller: "EVCHARGING_KAFKA_CONTROLLER_PORT (broker i takes it + 2·i)"}

    def endpoint(self, s):
        host, port, _ = self._address(s)
        if len(s.kafka_brokers) == 1:
            return f"{host}:{port} (topics {s.kafka_events_topic}, {s.kafka_manifests_topic})"
        return f"{host}:{port} (broker {self.node + 1} of {len(s.kafka_brokers)}, topics replicated {s.kafka_replicas}×)"

    def install(self, s, progress):
        builds.kafka_libs(s.cache_dir, progress)

    def _java(self, s: Settings, main: str, *args: str, heap: str = "256m", jvm: tuple[str, ...] = ()) -> list[str]:
        java = shutil.which("java", path=f"{os.environ.get('JAVA_HOME', '')}/bin:{os.environ.get('PATH', '')}")
        if not java:
            raise StackError(self.name, "no `java` on PATH (Java 17 is needed)")
        libs = builds.kafka_libs(s.cache_dir)
        log4j = builds.NATIVE_DIR / "kafka" / "log4j2.properties"
        return [java, f"-Xmx{heap}", *jvm, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*", main, *args]

    def properties(self, s: Settings) -> list[str]:
        """server.properties of this node."""
        host, port, controller = self._address(s)
        nodes = len(s.kafka_brokers)
        voters = ",".join(f"{n + 1}@{HOST}:{s.kafka_controller_port + 2 * n}" for n in range(nodes))
        # Kafka's internal topics as replicated as the project's own (a consumer group's offsets on
        # one broker would be lost with it); min ISR one less, as for the project's topics.
        replicas = min(s.kafka_replicas, nodes)
        min_isr = max(1, replicas - 1)
        return [
            "process.roles=broker,controller", f"node.id={self.node + 1}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self._home(s) / 'data'}",
            f"default.replication.factor={replicas}", f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={replicas}", f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={min_isr}", f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={min_isr}", "group.initial.rebalance.delay.ms=0",
            "num.network.threads=2", "num.io.threads=2", "num.partitions=1", "auto.create.topics.enable=false",
        ]

    def _cluster_id(self, s: Settings) -> str:
        """One id for every node of the cluster (each node's storage is formatted with it)."""
        path = self._home(s).parent / "cluster.id" if len(s.kafka_brokers) > 1 else self._home(s) / "cluster.id"
        if path.exists():
            return path.read_text().strip()
        # The tool may print a log4j line before the id: the id is the last line.
        out = subprocess.run(self._java(s, "kafka.tools.StorageTool", "random-uuid"),
                             capture_output=True, text=True, timeout=120).stdout.split()
        cluster_id = out[-1] if out else ""
        if not cluster_id:
            raise StackError(self.name, "kafka-storage random-uuid printed nothing")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cluster_id + "\n")
        return cluster_id

    def launch(self, s, proc):
        home = self._home(s)
        home.mkdir(parents=True, exist_ok=True)
        props = home / "server.properties"
        props.write_text("\n".join(self.properties(s)) + "\n")
        if not (home / "data" / "meta.properties").exists():
            fmt = subprocess.run(self._java(s, "kafka.tools.StorageTool", "format", "-t", self._cluster_id(s), "-c",
                                            str(props), "--ignore-formatted"), capture_output=True, text=True, timeout=120)
            if fmt.returncode != 0:
                proc.log_file.parent.mkdir(parents=True, exist_ok=True)
                proc.log_file.write_text(fmt.stdout + fmt.stderr)
                raise StackError(self.name, "formatting the KRaft storage failed", proc.log_file)
        # The broker's heap is fixed, as Kafka's own start script sets it (-Xms = -Xmx), and touched at
        # start: without that G1 touched more of a 1 GB heap over hours and the broker's RSS grew by 13 %
        # over the 2-hour soak. Now its footprint is what it will be from the first minute.
        proc.start(self._java(s, "kafka.Kafka", str(props), heap=BROKER_HEAP,
                              jvm=(f"-Xms{BROKER_HEAP}", "-XX:+AlwaysPreTouch")), cwd=home)

    def _brokers_seen(self, s: Settings) -> list[int]:
        """The broker ids in the cluster's metadata, asked of this broker alone."""
        host, port, _ = self._address(s)
        return asyncio.run(asyncio.wait_for(cluster_brokers(f"{host}:{port}", 3000), 10))

    def healthy(self, s):
        """This broker answers and the cluster's metadata lists it (a fenced broker drops out)."""
        return self.node + 1 in self._brokers_seen(s)

    def started(self, s):
        # A controller quorum of three elects a leader only once two voters run, and a broker
        # answers only then: the first nodes are "started" once their controller listens; the
        # last once every broker is in the cluster's metadata (then the topics can be replicated).
        if self.node < len(s.kafka_brokers) - 1:
            return port_open(HOST, self._address(s)[2])
        return set(self._brokers_seen(s)) >= set(range(1, len(s.kafka_brokers) + 1))

    def started_as(self, s):
        return "listening" if self.node < len(s.kafka_brokers) - 1 else "healthy"

    def initialise(self, s):
        if self.node == len(s.kafka_brokers) - 1:  # the last node up: the whole cluster is there
            asyncio.run(kafka_resource(s).ensure_topics())


def kafka_services(s: Settings, started: bool = False) -> list[Service]:
    """One broker per address in EVCHARGING_KAFKA_BOOTSTRAP_SERVERS (``started``: also the nodes of
    the other mode whose pid files remain, so that ``down`` stops them)."""
    nodes = len(s.kafka_brokers)
    names = ["kafka"] if nodes == 1 else [f"kafka-{n + 1}" for n in range(nodes)]
    found = [KafkaService(name, start_timeout=120, node=n) for n, name in enumerate(names)]
    if started:
        found += [KafkaService(p.stem, start_timeout=120) for p in sorted(s.run_dir.glob("kafka*.pid"))
                  if p.stem not in names]
    return found


SERVICES: list[Service] = [
    PostgresService("postgres", start_timeout=60),
    FerretDBService("ferretdb", start_timeout=60),
    MinioService("minio", start_timeout=90),
    LakeFSService("lakefs", start_timeout=90),
]
