"""Shared helpers of the deployment tests: the compose loader (compose-go, built once and cached),
a complete env file for it, and the compose service environment made runnable on this machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from evcharging.settings import PROJECT_DIR, Settings, load_settings
from evcharging.stack.builds import compose_config_binary

INFRA = PROJECT_DIR / "infra"
COMPOSE_FILE = INFRA / "docker-compose.yml"
ENV_EXAMPLE = INFRA / ".env.example"
LOAD_TIMEOUT = 60

# Values for the required variables when only the file's shape matters. Each is unique, so a test
# can tell that a value in the loaded configuration came from the environment.
PLACEHOLDERS = {
    "EVCHARGING_MINIO_ROOT_USER": "envMinioUser",
    "EVCHARGING_MINIO_ROOT_PASSWORD": "envMinioPassword",
    "EVCHARGING_LAKEFS_ACCESS_KEY_ID": "AKIAENVLAKEFSKEY0000",
    "EVCHARGING_LAKEFS_SECRET_ACCESS_KEY": "envLakefsSecretAccessKey",
    "EVCHARGING_LAKEFS_ENCRYPT_SECRET": "envLakefsEncryptSecret",
    "EVCHARGING_POSTGRES_USER": "envPostgresUser",
    "EVCHARGING_POSTGRES_PASSWORD": "envPostgresPassword",
    "MONGO_ROOT_USER": "envMongoUser",
    "MONGO_ROOT_PASSWORD": "envMongoPassword",
    "CLICKHOUSE_USER": "envClickhouseUser",
    "CLICKHOUSE_PASSWORD": "envClickhousePassword",
    "KAFKA_CLUSTER_ID": "envKafkaClusterId0000",
    "DOCKER_SOCKET_GID": "4242",
}


def env_example_names() -> list[str]:
    """Every variable infra/.env.example lists (as KEY= lines)."""
    return re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M)


def write_env(path: Path, values: dict[str, str]) -> Path:
    """infra/.env.example with ``values`` filled in (what an operator's infra/.env looks like)."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=", line)
        lines.append(f"{m.group(1)}={values[m.group(1)]}" if m and m.group(1) in values else line)
    extra = set(values) - set(env_example_names())
    assert not extra, f"not in infra/.env.example: {sorted(extra)}"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_compose_config(tool: Path, env_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool), "-f", str(COMPOSE_FILE), "-env-file", str(env_file)],
                          capture_output=True, text=True, timeout=LOAD_TIMEOUT)


def load_compose(tool: Path, env_file: Path) -> dict:
    """The normalised project and the variables compose-go found, or a failure with its message."""
    proc = run_compose_config(tool, env_file)
    assert proc.returncode == 0, f"compose-go rejected {COMPOSE_FILE}:\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def compose_tool() -> Path:
    """compose-config (compose-go v2.9.0 behind infra/native/compose), built once per cache."""
    settings = load_settings()
    return compose_config_binary(settings.cache_dir, lambda msg: print(f"[build] {msg}", flush=True))


@pytest.fixture(scope="session")
def compose(compose_tool, tmp_path_factory) -> dict:
    """The compose file as compose-go loads it with infra/.env.example and placeholder secrets."""
    env = write_env(tmp_path_factory.mktemp("compose") / ".env", PLACEHOLDERS)
    return load_compose(compose_tool, env)


# --- running a compose service's entry point natively -----------------------------------------

# Paths that exist inside the project image (infra/Dockerfile) and their stand-ins here.
IMAGE_PATHS = ("/var/lib/evcharging", "/opt/dagster/home")
BIN = Path(sys.executable).parent


def local_env_values(s: Settings, **extra: str) -> dict[str, str]:
    """An infra/.env that points the deployment at the native local stack on 127.0.0.1."""
    return {
        **PLACEHOLDERS,
        "EVCHARGING_MINIO_ROOT_USER": s.minio_root_user,
        "EVCHARGING_MINIO_ROOT_PASSWORD": s.require("minio_root_password"),
        "EVCHARGING_MINIO_ENDPOINT": s.minio_endpoint,
        "EVCHARGING_LAKEFS_ENDPOINT": s.lakefs_endpoint,
        "EVCHARGING_LAKEFS_ACCESS_KEY_ID": s.require("lakefs_access_key_id"),
        "EVCHARGING_LAKEFS_SECRET_ACCESS_KEY": s.require("lakefs_secret_access_key"),
        "EVCHARGING_LAKEFS_ENCRYPT_SECRET": s.require("lakefs_encrypt_secret"),
        "EVCHARGING_LAKEFS_REPOSITORY": s.lakefs_repository,
        "EVCHARGING_POSTGRES_USER": s.postgres_user,
        "EVCHARGING_POSTGRES_PASSWORD": s.require("postgres_password"),
        "DAGSTER_POSTGRES_HOST": "127.0.0.1",
        "DAGSTER_POSTGRES_PORT": str(s.postgres_port),
        "EVCHARGING_MONGO_URL": s.mongo_url,
        "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "EVCHARGING_SPARK_MASTER": "local[2]",
        "DAGSTER_RUN_SPARK_MASTER": "local[2]",
        "EVCHARGING_SPARK_DRIVER_MEMORY": "1g",
        **extra,
    }


def service_env(project: dict, service: str, root: Path, settings: Settings) -> dict[str, str]:
    """Exactly the environment compose gives ``service``, plus what the image itself sets, with the
    image's paths moved under ``root`` and *_HOST/*_HOSTNAME values that name a compose service
    replaced by 127.0.0.1. Nothing is inherited from this process except PATH/HOME/locale."""
    import os

    names = set(project["project"]["services"])
    image_env = {  # the ENV lines of infra/Dockerfile, for the variables the code reads
        "EVCHARGING_DATA_DIR": "/var/lib/evcharging",
        "EVCHARGING_CACHE_DIR": str(settings.cache_dir),  # the jars the image bakes in live here
        "DAGSTER_HOME": "/opt/dagster/home",
        "PYTHONUNBUFFERED": "1",
    }
    env = {**image_env, **{k: v for k, v in project["project"]["services"][service].get("environment", {}).items()
                           if v is not None}}
    out = {}
    for key, value in env.items():
        for path in IMAGE_PATHS:
            if value == path or value.startswith(path + "/"):
                value = str(root / path.strip("/").replace("/", "_")) + value[len(path):]
        if key.endswith(("HOST", "HOSTNAME")) and value in names:
            value = "127.0.0.1"
        out[key] = value
    out.update({k: os.environ[k] for k in ("HOME", "LANG", "JAVA_HOME") if k in os.environ})
    out["PATH"] = f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return out


def local_command(command: list[str]) -> list[str]:
    """A service's command with the image's paths mapped here (/app is the project root)."""
    argv = [PROJECT_DIR.as_posix() + arg[len("/app"):] if arg.startswith("/app/") else arg for arg in command]
    if argv[0] == "python":
        argv[0] = sys.executable
    elif (BIN / argv[0]).exists():
        argv[0] = str(BIN / argv[0])
    return argv


@pytest.fixture
def fresh_database(stack_settings):
    """An empty database on the local stack's PostgreSQL, dropped afterwards."""
    import psycopg2

    name = f"dagster_deploy_{uuid.uuid4().hex[:8]}"
    dsn = dict(host="127.0.0.1", port=stack_settings.postgres_port, user=stack_settings.postgres_user,
               password=stack_settings.require("postgres_password"), dbname="postgres", connect_timeout=10)
    conn = psycopg2.connect(**dsn)
    conn.autocommit = True
    try:
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
