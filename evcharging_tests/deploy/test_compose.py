"""infra/docker-compose.yml, loaded by a real Compose implementation, keeps the deployment's rules.

compose-go v2.9.0 — the loader inside `docker compose` v2 — is built from the Go module proxy
(cached; see evcharging.stack.builds.compose_config_binary) and loads the file with an env file only,
exactly as `docker compose --env-file infra/.env config` would. On its normalised output this proves:
every image is pinned to an exact version; every long-running service has a health check; every
dependency waits for health (or for a one-shot job's success); every variable compose uses is
documented in infra/.env.example and every secret is required (`${VAR:?}`, so compose fails fast);
no credential is written in the file; each project service runs an entry point that exists in the
package; only the web UIs are published, on 127.0.0.1; stateful services use named volumes; memory
limits fit one 16 GB host.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import time
import tomllib
from importlib.metadata import entry_points

import pytest

from evcharging.settings import PROJECT_DIR
from evcharging.stack.builds import compose_config_binary
from evcharging_tests.deploy.conftest import (
    COMPOSE_FILE, PLACEHOLDERS, env_example_names, load_compose, run_compose_config, write_env)

PROJECT_SERVICES = {"init", "spark-master", "spark-worker", "stream", "simulator", "code-location",
                    "dagster-webserver", "dagster-daemon"}
# Services with state, and the container path that must be a named volume.
STATEFUL = {"postgres": "/var/lib/postgresql/data", "mongo": "/data/db", "kafka-1": "/var/lib/kafka/data",
            "kafka-2": "/var/lib/kafka/data", "kafka-3": "/var/lib/kafka/data",
            "minio": "/data", "clickhouse": "/var/lib/clickhouse", "dagster-webserver": "/opt/dagster/home/storage"}
PUBLISHED = {"dagster-webserver": {3000}, "ch-ui": {5521}, "lakefs": {8000}, "minio": {9001},
             "clickhouse": {8123}}  # ClickHouse HTTP: CH-UI's browser side queries it (see the file)
SECRETS = {"EVCHARGING_MINIO_ROOT_PASSWORD", "EVCHARGING_LAKEFS_ACCESS_KEY_ID", "EVCHARGING_LAKEFS_SECRET_ACCESS_KEY",
           "EVCHARGING_LAKEFS_ENCRYPT_SECRET", "EVCHARGING_POSTGRES_PASSWORD", "MONGO_ROOT_PASSWORD",
           "CLICKHOUSE_PASSWORD"}
HOST_MEMORY = 16 * 2**30


def services(compose) -> dict:
    return compose["project"]["services"]


def one_shot(compose) -> set[str]:
    """Services some other service waits to *complete*: jobs, not servers."""
    return {dep for svc in services(compose).values() for dep, cond in (svc.get("depends_on") or {}).items()
            if cond["condition"] == "service_completed_successfully"}


def test_the_loader_is_cached(tmp_path):
    """The second build of the compose tool is a cache hit (instant)."""
    from evcharging.settings import load_settings

    cache = load_settings().cache_dir
    first = compose_config_binary(cache)
    started = time.monotonic()
    assert compose_config_binary(cache) == first
    assert time.monotonic() - started < 1.0


def test_every_image_has_an_exact_version(compose):
    for name, svc in services(compose).items():
        image = svc.get("image")
        assert image, f"{name}: no image"
        ref, _, digest = image.partition("@")
        repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
        assert tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} uses latest"
        # PostgreSQL numbers its releases major.minor (17.6 is exact; 17 floats); the rest use at
        # least major.minor.patch (8.0 floats), or a release time stamp (MinIO).
        exact = r"^v?\d+\.\d+(-|$)" if repo == "postgres" else r"^v?\d+\.\d+\.\d+|^RELEASE\.\d{4}-\d\d-\d\dT"
        assert re.search(exact, tag) or digest, f"{name}: image {image!r} is not an exact version"


def test_every_long_running_service_has_a_health_check(compose):
    jobs = one_shot(compose)
    assert jobs == {"init"}
    for name, svc in services(compose).items():
        if name in jobs:
            assert svc.get("restart") == "no", f"{name}: a one-shot job must not restart"
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: {check['test']}"


def test_dependencies_wait_for_health_or_completion(compose):
    svcs, jobs = services(compose), one_shot(compose)
    for name, svc in svcs.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in svcs, f"{name} depends on {dep}, which does not exist"
            wanted = "service_completed_successfully" if dep in jobs else "service_healthy"
            assert cond["condition"] == wanted, f"{name} -> {dep}: {cond['condition']}, expected {wanted}"
    # The wiring that makes start-up order right, not merely valid:
    needs = {"lakefs": {"postgres", "minio"}, "init": {"kafka-1", "kafka-2", "kafka-3", "minio", "lakefs", "clickhouse"},
             "stream": {"init", "spark-master", "spark-worker"}, "simulator": {"init", "mongo"},
             "code-location": {"init", "postgres"}, "dagster-webserver": {"code-location"},
             "dagster-daemon": {"code-location"}, "spark-worker": {"spark-master"}, "ch-ui": {"clickhouse"}}
    for name, deps in needs.items():
        assert deps <= set(svcs[name].get("depends_on") or {}), f"{name} must wait for {deps}"


def test_every_variable_is_documented_and_secrets_are_required(compose):
    documented = set(env_example_names())
    used = compose["variables"]
    assert set(used) - documented == set(), f"used by compose, missing from infra/.env.example: {set(used) - documented}"
    assert documented - set(used) == set(), f"in infra/.env.example but unused: {documented - set(used)}"
    for name in SECRETS:
        assert used[name]["required"], f"{name} is a secret: compose must require it with ${{{name}:?…}}"
    # Every variable the file uses verbatim, by text, too (a second opinion on compose-go's list).
    code = "\n".join(line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#"))
    text_vars = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", code))
    assert text_vars == set(used)


def test_compose_fails_fast_without_a_secret(compose_tool, tmp_path):
    for missing in sorted(SECRETS & set(PLACEHOLDERS)):
        env = write_env(tmp_path / f"{missing}.env", {k: v for k, v in PLACEHOLDERS.items() if k != missing})
        proc = run_compose_config(compose_tool, env)
        assert proc.returncode != 0, f"compose started without {missing}"
        assert missing in proc.stderr and "infra/.env" in proc.stderr, proc.stderr


def test_the_example_env_as_shipped_is_refused(compose_tool, tmp_path):
    """Copying infra/.env.example without filling in the secrets fails with a message naming one."""
    env = tmp_path / ".env"
    shutil.copyfile(PROJECT_DIR / "infra" / ".env.example", env)
    proc = run_compose_config(compose_tool, env)
    assert proc.returncode != 0 and "required variable" in proc.stderr, proc.stderr


def test_no_credential_literal(compose):
    """Every credential-like value in the loaded configuration came from the environment."""
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"AKIA[A-Z0-9]{12,}", text), "an access key id is written in the file"
    for word in ("minioadmin", "changeme", "password123", "secret123"):
        assert word not in text.lower()
    credentialish = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|_PASS$|TOKEN|CONNECTION_STRING|_URL$")
    placeholder_values = set(PLACEHOLDERS.values())
    for name, svc in services(compose).items():
        for key, value in (svc.get("environment") or {}).items():
            if value is None or not credentialish.search(key):
                continue
            userinfo = re.search(r"//([^/@]*)@", value)
            if "PASSWORD" in key or "SECRET" in key or "ACCESS_KEY" in key:
                assert value in placeholder_values, f"{name}.{key} is not taken from the environment"
            elif userinfo:  # a URL with credentials: both parts from the environment
                user, _, password = userinfo.group(1).partition(":")
                assert {user, password} <= placeholder_values, f"{name}.{key} has credentials written in"


def _console_scripts() -> set[str]:
    declared = set(tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["scripts"])
    return declared | {ep.name for ep in entry_points(group="console_scripts")}


def test_project_services_run_entry_points_that_exist(compose):
    """Each project command is a console script, an importable `python -m` module or a script in
    infra/compose/ (baked into the image at /app)."""
    scripts = _console_scripts()
    declared = set(tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["scripts"])
    for name in PROJECT_SERVICES:
        svc = services(compose)[name]
        assert svc["image"] == services(compose)["code-location"]["image"], f"{name}: not the project image"
        command = svc["command"]
        if command[0] == "python" and command[1] == "-m":
            module = command[2]
            assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
            if importlib.util.find_spec(module).submodule_search_locations:
                assert importlib.util.find_spec(f"{module}.__main__"), f"{name}: {module} has no __main__"
        elif command[0] == "python":
            assert command[1].startswith("/app/infra/compose/")
            assert (PROJECT_DIR / command[1].removeprefix("/app/")).is_file(), f"{name}: {command[1]} missing"
        elif command[0] == "spark-class":
            from pathlib import Path

            import pyspark

            assert (Path(pyspark.__file__).parent / "bin" / "spark-class").exists(), "pyspark has no spark-class"
        else:
            assert command[0] in scripts, f"{name}: {command[0]} is no console script"
    assert services(compose)["simulator"]["command"][0] in declared  # evcharging-sim is the project's own
    assert services(compose)["stream"]["command"] == ["python", "-m", "evcharging.streaming"]
    assert services(compose)["stream"]["environment"]["EVCHARGING_SPARK_MASTER"] == "spark://spark-master:7077"
    assert services(compose)["code-location"]["command"][:5] == ["dagster", "code-server", "start", "-m",
                                                                  "evcharging.definitions"]


def test_project_services_get_their_settings_as_evcharging_variables(compose):
    from evcharging.settings import ENV_PREFIX, Settings

    fields = {f"{ENV_PREFIX}{f.upper()}" for f in Settings.model_fields}
    for name in PROJECT_SERVICES - {"spark-master", "spark-worker"}:
        env = services(compose)[name].get("environment") or {}
        ours = {k for k in env if k.startswith(ENV_PREFIX) and k != "EVCHARGING_IMAGE"}
        assert ours, f"{name}: no EVCHARGING_* settings"
        assert ours <= fields, f"{name}: {ours - fields} are not settings in evcharging/settings.py"
    warehouse = services(compose)["code-location"]["environment"]["EVCHARGING_CLICKHOUSE_URL"]
    assert warehouse.endswith("@clickhouse:8123")


def test_lakefs_on_postgres_gets_its_admin_from_init(compose):
    """lakeFS 1.86 creates its admin from LAKEFS_INSTALLATION_* only on a local KV (cmd/lakefs/cmd/run.go).
    On PostgreSQL those variables would do nothing and every call would answer 401: `init` sets the
    admin up (``LakeFSResource.ensure_admin``, which the local stack's lakeFS on PostgreSQL runs too)."""
    lakefs = services(compose)["lakefs"]["environment"]
    assert lakefs["LAKEFS_DATABASE_TYPE"] == "postgres"
    assert not [k for k in lakefs if k.startswith("LAKEFS_INSTALLATION_")]
    init = services(compose)["init"]["environment"]
    assert {"EVCHARGING_LAKEFS_ADMIN_USER", "EVCHARGING_LAKEFS_ACCESS_KEY_ID", "EVCHARGING_LAKEFS_SECRET_ACCESS_KEY"} <= set(init)
    assert "ensure_admin(" in (PROJECT_DIR / "infra" / "compose" / "init.py").read_text()


def test_only_the_uis_are_published_on_loopback(compose):
    for name, svc in services(compose).items():
        ports = svc.get("ports") or []
        assert {int(p["target"]) for p in ports} == PUBLISHED.get(name, set()), f"{name}: publishes {ports}"
        for p in ports:
            assert p.get("host_ip") == "127.0.0.1", f"{name}: port {p['target']} is bound to {p.get('host_ip')!r}"


def test_stateful_services_use_named_volumes(compose):
    declared = set(compose["project"].get("volumes") or {})
    for name, path in STATEFUL.items():
        mounts = {m["target"]: m for m in services(compose)[name].get("volumes") or []}
        assert path in mounts, f"{name}: {path} is not a volume"
        assert mounts[path]["type"] == "volume" and mounts[path]["source"] in declared, f"{name}: {mounts[path]}"
    assert compose["project"]["networks"]["default"]["name"] == "evcharging"  # infra/dagster.yaml uses it


def test_memory_limits_fit_one_16_gb_host(compose):
    import yaml

    total, jobs = 0, one_shot(compose)
    for name, svc in services(compose).items():
        limit = (((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}).get("memory")
        assert limit, f"{name}: no memory limit"
        # A one-shot job (init) has exited before anything that waits for it starts: not counted.
        total += 0 if name in jobs else int(limit)
    dagster = yaml.safe_load((PROJECT_DIR / "infra" / "dagster.yaml").read_text())
    per_run = dagster["run_launcher"]["config"]["container_kwargs"]["mem_limit"]
    runs = dagster["concurrency"]["runs"]["max_concurrent_runs"]
    total += runs * int(per_run.rstrip("m")) * 2**20
    assert total <= HOST_MEMORY - 2 * 2**30, f"{total / 2**30:.1f} GiB leaves less than 2 GiB for the host"


@pytest.mark.parametrize("var,value", [("BIND_ADDRESS", "0.0.0.0")])
def test_binding_is_a_setting(compose_tool, tmp_path, var, value):
    project = load_compose(compose_tool, write_env(tmp_path / ".env", {**PLACEHOLDERS, var: value}))
    assert {p["host_ip"] for p in project["project"]["services"]["dagster-webserver"]["ports"]} == {value}
