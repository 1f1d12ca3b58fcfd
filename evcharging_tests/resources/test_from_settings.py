"""Every setting a compose service sets reaches the resource that uses it, as Dagster binds it.

Each ``EVCHARGING_*`` variable that ``infra/docker-compose.yml`` gives a project service is set to a
value of its own; the definitions are loaded as the code location loads them, and each value must
turn up in the resource field that uses it (secrets as the ``EnvVar`` that names the variable). A
variable no resource uses must say who does, so a new compose setting cannot go nowhere unnoticed.
This is how the warehouse lost ``EVCHARGING_CLICKHOUSE_LAKEFS_ENDPOINT`` once: two factories.
"""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from evcharging.resources.from_settings import minio_s3_client, resources
from evcharging.settings import PROJECT_DIR, Settings

COMPOSE = yaml.safe_load((PROJECT_DIR / "infra" / "docker-compose.yml").read_text())

# variable → (resource key, field) pairs that must hold its value
REACHES = {
    "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS": [("kafka", "bootstrap_servers")],
    "EVCHARGING_KAFKA_EVENTS_TOPIC": [("kafka", "events_topic")],
    "EVCHARGING_KAFKA_EVENTS_PARTITIONS": [("kafka", "events_partitions")],
    "EVCHARGING_KAFKA_MANIFESTS_TOPIC": [("kafka", "manifests_topic")],
    "EVCHARGING_KAFKA_EVENTS_RETENTION_HOURS": [("kafka", "events_retention_hours")],
    "EVCHARGING_LAKEFS_ENDPOINT": [("lakefs", "endpoint"), ("spark", "spark_config")],
    "EVCHARGING_LAKEFS_ACCESS_KEY_ID": [("lakefs", "access_key_id"), ("spark", "lakefs_access_key_id")],
    "EVCHARGING_LAKEFS_SECRET_ACCESS_KEY": [("lakefs", "secret_access_key"), ("spark", "lakefs_secret_access_key")],
    "EVCHARGING_LAKEFS_REPOSITORY": [("lakefs", "repository")],
    "EVCHARGING_LAKEFS_DEFAULT_BRANCH": [("lakefs", "default_branch")],
    "EVCHARGING_MONGO_URL": [("mongo", "url")],
    "EVCHARGING_MONGO_DATABASE": [("mongo", "database")],
    "EVCHARGING_CLICKHOUSE_URL": [("warehouse", "clickhouse_url")],
    "EVCHARGING_CLICKHOUSE_DATABASE": [("warehouse", "database")],
    "EVCHARGING_CLICKHOUSE_LAKEFS_ENDPOINT": [("warehouse", "lakefs_endpoint")],
    "EVCHARGING_SPARK_MASTER": [("spark", "spark_config")],
    "EVCHARGING_SPARK_DRIVER_MEMORY": [("spark", "spark_config")],
    "EVCHARGING_SPARK_CORES_MAX": [("spark", "spark_config")],
    "EVCHARGING_SPARK_EXECUTOR_MEMORY": [("spark", "spark_config")],
    "EVCHARGING_SIMULATOR_DOCKER_IMAGE": [("simulator", "docker_image")],
    "EVCHARGING_SIMULATOR_DOCKER_NETWORK": [("simulator", "docker_network")],
}
# variables compose sets that no Dagster resource uses, and who does
USED_ELSEWHERE = {
    "EVCHARGING_MINIO_ENDPOINT": "minio_s3_client (infra/compose/init.py creates the bucket)",
    "EVCHARGING_MINIO_ROOT_USER": "minio_s3_client",
    "EVCHARGING_MINIO_ROOT_PASSWORD": "minio_s3_client",
    "EVCHARGING_MINIO_BUCKET": "infra/compose/init.py (the lakeFS repository's storage namespace)",
    "EVCHARGING_LAKEFS_ADMIN_USER": "infra/compose/init.py (sets lakeFS's admin up on PostgreSQL)",
    "EVCHARGING_MINIO_CHECKPOINT_BUCKET": "infra/compose/init.py creates it; Spark's S3A per-bucket settings name it",
    "EVCHARGING_SPARK_CHECKPOINT_DIR": "the stream (StreamOptions.from_settings)",
    "EVCHARGING_STREAM_NAME": "the stream; the sensors read it when they evaluate",
    "EVCHARGING_STREAM_TRIGGER_SECONDS": "the stream",
    "EVCHARGING_STREAM_MAX_OFFSETS_PER_TRIGGER": "the stream",
    "EVCHARGING_STREAM_OUTAGE_WINDOW_SECONDS": "the stream (how long it waits out an unreachable service)",
    "EVCHARGING_POSTGRES_USER": "infra/dagster.yaml (the instance's storage)",
    "EVCHARGING_POSTGRES_PASSWORD": "infra/dagster.yaml (the instance's storage)",
    "EVCHARGING_IMAGE": "infra/dagster.yaml (the run launcher's image); not a setting",
}


def compose_settings() -> dict[str, set[str]]:
    """Per project service, the EVCHARGING_* variables compose sets for it."""
    return {name: {k for k in (svc.get("environment") or {}) if k.startswith("EVCHARGING_")}
            for name, svc in COMPOSE["services"].items()}


def _value(name: str, n: int) -> str:
    """A value of the variable's type that is unique to it."""
    field = Settings.model_fields.get(name.removeprefix("EVCHARGING_").lower())
    if field is not None and field.annotation in (int, float):
        return str(1000 + n)
    return f"http://set-{name.lower().replace('_', '-')}:{4000 + n}"


@pytest.fixture
def compose_env(monkeypatch, tmp_path) -> dict[str, str]:
    names = sorted(set().union(*compose_settings().values()) | set(REACHES))
    env = {name: _value(name, i) for i, name in enumerate(names)}
    env["EVCHARGING_SPARK_CHECKPOINT_DIR"] = str(tmp_path / "checkpoints")
    env["EVCHARGING_SPARK_MASTER"] = "spark://set-evcharging-spark-master:7077"  # a cluster: cores.max applies
    env["EVCHARGING_STREAM_NAME"] = "set_evcharging_stream_name"  # one word: a stream name has no dash
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EVCHARGING_DATA_DIR", str(tmp_path))  # no local secrets file underneath
    return env


def _resolved(value):
    return value.get_value() if isinstance(value, dg.EnvVar) else value


def test_every_compose_setting_has_a_known_consumer():
    used = set().union(*compose_settings().values())
    assert used - set(REACHES) - set(USED_ELSEWHERE) == set()


def test_each_setting_reaches_its_resource_as_dagster_binds_it(compose_env):
    from evcharging.definitions import defs

    bound = defs().resources
    for name, targets in REACHES.items():
        for key, field in targets:
            value = _resolved(getattr(bound[key], field))
            found = compose_env[name] in value.values() if isinstance(value, dict) else str(value) == compose_env[name]
            assert found, f"{name} does not reach {key}.{field} (it holds {value!r})"


def test_secrets_are_bound_by_name_not_value(compose_env):
    from evcharging.definitions import defs

    bound = defs().resources
    assert isinstance(bound["lakefs"].secret_access_key, dg.EnvVar)
    assert isinstance(bound["warehouse"].clickhouse_url, dg.EnvVar)
    assert compose_env["EVCHARGING_LAKEFS_SECRET_ACCESS_KEY"] not in str(bound["spark"].spark_config)


def test_dagster_and_scripts_get_the_same_resources(compose_env):
    """The definitions and code outside Dagster (CLI, stream, benchmarks) build from one factory."""
    from evcharging.definitions import defs

    bound, plain = defs().resources, resources(Settings())
    assert set(bound) == set(plain)
    for key, resource in plain.items():
        fields = type(resource).model_fields
        assert {f: _resolved(getattr(bound[key], f)) for f in fields} == {f: getattr(resource, f) for f in fields}, key


def test_the_other_consumers_get_theirs(compose_env):
    from evcharging.streaming.job import StreamOptions

    settings = Settings()
    assert minio_s3_client(settings).meta.endpoint_url == compose_env["EVCHARGING_MINIO_ENDPOINT"]
    options = StreamOptions.from_settings(settings)
    assert options.stream_name == compose_env["EVCHARGING_STREAM_NAME"]
    assert options.trigger_seconds == int(compose_env["EVCHARGING_STREAM_TRIGGER_SECONDS"])
    assert options.max_offsets_per_trigger == int(compose_env["EVCHARGING_STREAM_MAX_OFFSETS_PER_TRIGGER"])
