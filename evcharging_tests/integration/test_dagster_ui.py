"""The whole pipeline in the Dagster UI, used as a person would, in a real browser.

Debian's Chromium, driven by Playwright's Python client, against `evcharging dev` on the local
stack; the pipeline has its own topics, lakeFS repository, MongoDB database, stream name, chDB and
Dagster home. What the browser shows is asserted, and each step is saved as a screenshot:

1. ``01-lineage.png``: the global lineage with every group expanded — every asset, the Kafka topic
   drawn between the MongoDB collections and the ingest batches;
2. ``02-launchpad.png``, ``03-simulator-run.png``: a simulator run launched from the topic's
   launchpad with a small config, and its run page after it succeeded, with Pipes progress lines;
3. ``04-topic.png``: the topic's page with the run manifest as metadata;
4. (a malformed record is produced, the stream drains the topic, the daemon's sensors audit, merge
   and load; the topic's observer sees the stream's lag drop to 0) ``05-runs.png``: the runs the
   sensors launched;
5. ``06-mart.png``: a mart's page with its new rows;
6. ``07-quarantine.png``: the quarantine asset's page (materialized by its automation sensor) with
   the malformed record's reason.

They are written to ``<data dir>/test-output/dagster-ui/`` (the data dir is ``.evcharging``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest

from evcharging.resources.from_settings import drop_repository, kafka_resource, scratch_repository
from evcharging.settings import PROJECT_DIR, load_settings
from evcharging_tests.integration.dev import start_dev

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

TOPIC = "kafka/ev_charging_events"
MART = "clickhouse/mart_daily_energy_by_city_operator"
MALFORMED = b'{"event_id": "broken-on-purpose", "station_id": <not json'
SIM_CONFIG = "ops:\n  simulator:\n    config:\n      vehicles: 200\n      hours: 2\n      seed: 7171\n      speed: 3600\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dagster:
    """`evcharging dev` on a port of its own, and its GraphQL API for waiting on what the UI shows."""

    def __init__(self, env: dict[str, str], log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**env, "EVCHARGING_DAGSTER_URL": self.url}
        self.proc = start_dev(self.port, env, log)
        self.log = log

    def query(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["data"]

    def wait(self, what: str, probe, timeout: float, every: float = 3):
        """Poll ``probe`` until it returns something truthy; fail with the dev log's tail if it never does."""
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"dagster dev exited:\n{self.log.read_text()[-3000:]}"
            try:
                last = probe()
                if last:
                    return last
            except OSError as err:  # not serving yet
                last = err
            time.sleep(every)
        raise AssertionError(f"waited {timeout:.0f} s for {what}; last: {last!r}\n{self.log.read_text()[-3000:]}")

    def asset_nodes(self) -> dict[str, list[str]]:
        nodes = self.query("{ assetNodes { assetKey { path } dependencyKeys { path } } }")["assetNodes"]
        return {"/".join(n["assetKey"]["path"]): sorted("/".join(d["path"]) for d in n["dependencyKeys"]) for n in nodes}

    def latest_materialization(self, key: str) -> dict | None:
        data = self.query("""query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
            assetMaterializations(limit: 1) { runId timestamp metadataEntries { label __typename
              ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
              ... on TextMetadataEntry { text } } } } } }""",
                          {"path": key.split("/")})
        events = data["assetNodeOrError"].get("assetMaterializations") or []
        if not events:
            return None
        entries = {e["label"]: next((e[k] for k in ("intValue", "floatValue", "text") if k in e), None)
                   for e in events[0]["metadataEntries"]}
        return {**entries, "dagster_run": events[0]["runId"], "timestamp": float(events[0]["timestamp"]) / 1000}

    def latest_observation(self, key: str) -> dict | None:
        data = self.query("""query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
            assetObservations(limit: 1) { timestamp metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }""",
                          {"path": key.split("/")})
        events = data["assetNodeOrError"].get("assetObservations") or []
        return {e["label"]: e.get("intValue") for e in events[0]["metadataEntries"]} if events else None

    def run(self, run_id: str) -> dict:
        return self.query("""query($id: ID!) { runOrError(runId: $id) { ... on Run { status jobName } } }""",
                          {"id": run_id})["runOrError"]

    def runs(self) -> list[dict]:
        data = self.query("{ runsOrError(limit: 50) { ... on Runs { results { runId status jobName } } } }")
        return data["runsOrError"]["results"]

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def pipeline(stack_settings, unique_name, tmp_path, monkeypatch):
    """Settings and environment of a pipeline of its own on the shared stack (cleaned up after)."""
    env = {
        "EVCHARGING_KAFKA_EVENTS_TOPIC": f"ui-events-{unique_name}",
        "EVCHARGING_KAFKA_MANIFESTS_TOPIC": f"ui-manifests-{unique_name}",
        "EVCHARGING_LAKEFS_REPOSITORY": f"ui-{unique_name}",
        "EVCHARGING_MONGO_DATABASE": f"ui_{unique_name}",
        "EVCHARGING_STREAM_NAME": f"ui{unique_name}",
        "EVCHARGING_DATA_DIR": str(tmp_path / "data"),  # Dagster home, audit cache, logs
        "EVCHARGING_CHDB_PATH": str(tmp_path / "chdb"),
        "EVCHARGING_SPARK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    lakefs = scratch_repository(settings, settings.lakefs_repository)
    asyncio.run(kafka_resource(settings).ensure_topics())
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    yield settings
    drop_repository(settings, lakefs)


def _load_reference(settings) -> None:
    """MongoDB stations and vehicles and their ClickHouse dimensions, on the instance the UI serves."""
    from evcharging.dagster_dev import dagster_env
    from evcharging.definitions import defs
    from evcharging.defs.reference.assets import stations, vehicles
    from evcharging.defs.warehouse.assets import dim_stations, dim_vehicles

    home = dagster_env(settings)["DAGSTER_HOME"]
    with dg.DagsterInstance.from_config(home) as instance:
        result = dg.materialize([stations, vehicles, dim_stations, dim_vehicles], instance=instance,
                                resources=defs().resources)
    assert result.success


def _produce(settings, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    async def send():
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(settings.kafka_events_topic, value, key=b"malformed")
        finally:
            await producer.stop()

    # Playwright's sync API runs an event loop in this thread: asyncio.run needs a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, send()).result()


def _stream(settings) -> None:
    result = subprocess.run([sys.executable, "-m", "evcharging.streaming", "--available-now"], cwd=PROJECT_DIR,
                            env=os.environ.copy(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _open(page, url: str, first: bool = False) -> None:
    page.goto(url)
    skip = page.get_by_role("button", name="Skip")  # the "Join the Dagster community" dialog, first visit only
    try:
        skip.wait_for(timeout=15_000 if first else 3000)
        skip.click()
    except Exception:  # noqa: BLE001 — Playwright's TimeoutError: the dialog was dismissed before
        pass


def _expand_all_groups(page) -> None:
    """Right-click an empty spot of the graph (its bottom left) → "Expand all groups"."""
    page.get_by_text("reference", exact=True).last.wait_for()
    graph = page.get_by_text("Search and filter assets").first.bounding_box()  # the graph's toolbar
    item = page.get_by_role("menuitem", name="Expand all groups")
    for _ in range(5):  # the graph may still be laying out
        page.mouse.click(graph["x"] + 30, page.viewport_size["height"] - 40, button="right")
        try:
            item.wait_for(timeout=3000)
            item.click()
            return
        except Exception:  # noqa: BLE001 — Playwright's TimeoutError: no menu yet
            page.keyboard.press("Escape")
    raise AssertionError("the lineage graph offered no 'Expand all groups'")


def _box(page, text: str) -> dict:
    return page.get_by_text(text, exact=True).first.bounding_box()


def test_the_pipeline_in_the_dagster_ui(pipeline, stack_settings):
    from playwright.sync_api import sync_playwright

    settings = pipeline
    shots = stack_settings.data_dir / "test-output" / "dagster-ui"
    shots.mkdir(parents=True, exist_ok=True)
    _load_reference(settings)
    dagster = Dagster(os.environ.copy(), settings.logs_dir / "dagster-dev.log")
    try:
        nodes = dagster.wait("the code location", dagster.asset_nodes, 240)
        assert nodes[TOPIC] == ["mongodb/stations", "mongodb/vehicles"] and nodes["ingest_batch"] == [TOPIC]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_context(viewport={"width": 1900, "height": 1100}).new_page()
            page.set_default_timeout(30_000)
            try:
                _walk_through(page, dagster, settings, nodes, shots)
            except BaseException:
                page.screenshot(path=shots / "failed.png", full_page=True)
                raise
            finally:
                browser.close()
    finally:
        dagster.stop()
    print(f"screenshots: {shots}")


def _walk_through(page, dagster: Dagster, settings, nodes: dict, shots: Path) -> None:
    """What a person does in the UI, step by step; each step ends in a screenshot."""
    from playwright.sync_api import expect

    # 1. The global lineage, every group expanded.
    _open(page, f"{dagster.url}/asset-groups", first=True)
    _expand_all_groups(page)
    for name in ("stations", "vehicles", "ev_charging_events", "ingest_batch", "lake_main",
                 "lake_quarantine", "dim_stations", "dim_time", "dim_vehicles"):
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    page.wait_for_timeout(1000)  # the layout settles
    page.screenshot(path=shots / "01-lineage.png")
    mongo, topic, batches = _box(page, "stations"), _box(page, "ev_charging_events"), _box(page, "ingest_batch")
    assert mongo["x"] < topic["x"] < batches["x"], (mongo, topic, batches)
    assert len(nodes) == 14, sorted(nodes)

    # 2. A simulator run from the topic's launchpad, with a small config.
    _open(page, f"{dagster.url}/assets/{TOPIC}")
    page.locator("button:has([aria-label=arrow_drop_down])").first.click()
    page.get_by_role("menuitem", name="Open launchpad").click()
    page.locator(".CodeMirror").wait_for()
    page.evaluate("(c) => document.querySelector('.CodeMirror').CodeMirror.setValue(c)", SIM_CONFIG)
    expect(page.get_by_text("No errors")).to_be_visible()
    page.screenshot(path=shots / "02-launchpad.png")
    page.get_by_role("dialog").locator("button", has_text="Materialize").click()
    page.wait_for_url("**/runs/*")
    run_id = page.url.rstrip("/").split("/")[-1]
    status = dagster.wait("the simulator run", lambda: dagster.run(run_id)["status"] in ("SUCCESS", "FAILURE")
                          and dagster.run(run_id)["status"], 300)
    assert status == "SUCCESS", f"simulator run {run_id}: {status}"
    page.reload()
    page.get_by_placeholder("Filter").fill("simulated up to")  # the Pipes progress lines
    expect(page.get_by_text("simulated up to").first).to_be_visible()
    page.screenshot(path=shots / "03-simulator-run.png", full_page=True)
    manifest = dagster.latest_materialization(TOPIC)
    assert manifest["dagster_run"] == run_id and manifest["events_total"] > 100, manifest
    _open(page, f"{dagster.url}/assets/{TOPIC}")
    expect(page.get_by_text(manifest["run_id"], exact=True).first).to_be_visible()  # the simulator's run id
    page.screenshot(path=shots / "04-topic.png", full_page=True)

    # 3. A malformed record, then the stream; the daemon's sensors audit, merge and load.
    _produce(settings, [MALFORMED])
    simulated = manifest["timestamp"]
    _stream(settings)
    mart = dagster.wait("the mart's new rows", lambda: (m := dagster.latest_materialization(MART))
                        and m["timestamp"] > simulated and m["dagster/row_count"] > 0 and m, 600, every=5)
    batch = dagster.latest_materialization("ingest_batch")
    assert batch["status"] == "merged", batch
    produced = manifest["events_total"] + 1  # and the malformed record
    dagster.wait("an observation of the topic with the stream caught up", lambda: (o := dagster.latest_observation(TOPIC))
                 and o["records"] == produced and o["consumer_lag"] == 0, 120)
    _open(page, f"{dagster.url}/runs")
    page.get_by_text("publish_ingest_batches").first.wait_for()
    page.screenshot(path=shots / "05-runs.png")

    facts = dagster.latest_materialization("clickhouse/fact_charging_events")
    assert facts["main_to_clickhouse_lag_seconds"] == 0.0 and facts["newest_event_in_clickhouse"] != "none", facts

    # 4. The mart's page shows its new rows.
    _open(page, f"{dagster.url}/assets/{MART}")
    expect(page.get_by_text("Row count").first).to_be_visible()
    expect(page.get_by_text(f"{mart['dagster/row_count']:,}", exact=True).first).to_be_visible()
    page.screenshot(path=shots / "06-mart.png", full_page=True)

    # 5. The quarantine asset's page shows why the malformed record was kept out.
    quarantine = dagster.wait("the quarantine asset", lambda: (q := dagster.latest_materialization(
        "lake_quarantine")) and q["dagster/row_count"] >= 1 and q, 300, every=5)
    assert quarantine["top_reason"] == "not a JSON object", quarantine
    _open(page, f"{dagster.url}/assets/lake_quarantine")
    expect(page.get_by_text("not a JSON object").first).to_be_visible()
    page.screenshot(path=shots / "07-quarantine.png", full_page=True)
