"""infra/dagster.yaml and infra/workspace.yaml are a valid Dagster instance and workspace.

Without any server: the instance YAML validates against Dagster's instance schema, each
configurable class it names resolves (DockerRunLauncher from dagster-docker, the PostgreSQL storage
from dagster-postgres) and accepts its config with the env vars compose sets, and the launcher is
constructed (it only talks to Docker when a run launches, so no engine is needed). The workspace
validates against Dagster's workspace schema as a gRPC code location.

Against the local stack (integration): the same files open a real DagsterInstance on the stack's
PostgreSQL (a fresh database, dropped afterwards), and the webserver's workspace loads the code
location from a natively started `dagster code-server` (see test_entrypoints.py).
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from evcharging.settings import PROJECT_DIR

INFRA = PROJECT_DIR / "infra"
COMPOSE_DAGSTER_ENV = {  # what infra/docker-compose.yml gives the Dagster services (x-dagster-env)
    "EVCHARGING_POSTGRES_USER": "envPostgresUser", "EVCHARGING_POSTGRES_PASSWORD": "envPostgresPassword",
    "DAGSTER_POSTGRES_HOST": "postgres", "DAGSTER_POSTGRES_PORT": "5432", "DAGSTER_POSTGRES_DB": "dagster",
    "EVCHARGING_IMAGE": "evcharging:0.1.0",
}


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    shutil.copyfile(INFRA / "dagster.yaml", tmp_path / "dagster.yaml")
    for key, value in COMPOSE_DAGSTER_ENV.items():
        monkeypatch.setenv(key, value)
    return tmp_path


def _class(section: dict):
    from dagster._serdes.config_class import class_from_code_pointer

    return class_from_code_pointer(section["module"], section["class"])


def test_instance_config_validates_and_its_classes_resolve(dagster_home):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes import ConfigurableClassData
    from dagster_docker import DockerRunLauncher
    from dagster_postgres import DagsterPostgresStorage

    config, custom_class = dagster_instance_config(str(dagster_home))
    assert custom_class is None

    launcher_section = config["run_launcher"]
    launcher_class = _class(launcher_section)
    assert launcher_class is DockerRunLauncher
    result = process_config(launcher_class.config_type(), launcher_section["config"])
    assert result.success, result.errors
    assert result.value["image"] == "evcharging:0.1.0"  # {env: EVCHARGING_IMAGE} resolved
    assert result.value["network"] == "evcharging"
    launcher = launcher_class.from_config_value(
        ConfigurableClassData(launcher_section["module"], launcher_section["class"], yaml.safe_dump(launcher_section["config"])),
        result.value)
    assert set(COMPOSE_DAGSTER_ENV) - {"EVCHARGING_IMAGE"} <= set(launcher.env_vars)  # runs reach the instance DB

    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    assert storage.value["postgres_db"]["hostname"] == "postgres"
    assert storage.value["postgres_db"]["password"] == "envPostgresPassword"

    assert config["concurrency"]["pools"]["default_limit"] == 1


def test_runs_get_every_setting_the_code_location_has():
    """A run container sees the same EVCHARGING_* settings as the code location (secrets included);
    a run may set one to a value of its own (``NAME=value``: the Spark driver's heap in a run's
    smaller container)."""
    launcher = yaml.safe_load((INFRA / "dagster.yaml").read_text())["run_launcher"]["config"]
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    code_location_env = set(compose["x-dagster-env"]) | set(compose["x-evcharging-env"])
    assert code_location_env - {"EVCHARGING_IMAGE"} == {v.split("=", 1)[0] for v in launcher["env_vars"]}


def test_workspace_is_a_grpc_code_location():
    from dagster._core.workspace.config_schema import process_workspace_config

    workspace = yaml.safe_load((INFRA / "workspace.yaml").read_text())
    result = process_workspace_config(workspace)
    assert result.success, result.errors
    [entry] = workspace["load_from"]
    assert entry["grpc_server"] == {"host": "code-location", "port": 4000, "location_name": "evcharging"}


@pytest.mark.integration
def test_instance_opens_on_a_real_postgres(stack_settings, fresh_database, dagster_home, monkeypatch):
    from dagster import DagsterInstance
    from dagster_docker import DockerRunLauncher
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    monkeypatch.setenv("DAGSTER_POSTGRES_HOST", "127.0.0.1")
    monkeypatch.setenv("DAGSTER_POSTGRES_PORT", str(stack_settings.postgres_port))
    monkeypatch.setenv("DAGSTER_POSTGRES_DB", fresh_database)
    monkeypatch.setenv("EVCHARGING_POSTGRES_USER", stack_settings.postgres_user)
    monkeypatch.setenv("EVCHARGING_POSTGRES_PASSWORD", stack_settings.require("postgres_password"))
    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        assert isinstance(instance.run_launcher, DockerRunLauncher)
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert instance.get_runs_count() == 0  # the schema was created and answers
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    finally:
        instance.dispose()
