"""`evcharging dev` serves the Dagster UI with the whole lineage, MongoDB to the lake's main."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from evcharging_tests.integration.dev import start_dev

pytestmark = pytest.mark.integration

PORT = 3391


def _asset_keys() -> list[str]:
    query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/graphql", data=query,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        nodes = json.load(response)["data"]["assetNodes"]
    return sorted("/".join(n["assetKey"]["path"]) for n in nodes)


def test_dagster_dev_serves_the_asset_graph(stack_settings, tmp_path):
    env = {**os.environ, "EVCHARGING_DATA_DIR": str(tmp_path)}
    log = tmp_path / "dev.log"
    proc = start_dev(PORT, env, log)
    keys: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                keys = _asset_keys()
                if keys:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert {"mongodb/stations", "mongodb/vehicles", "ingest_batch", "lake_main"} <= set(keys), keys
