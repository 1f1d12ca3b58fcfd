"""The command line: --help works, a file run writes a manifest whose counts match the file, the
same seed writes a byte-identical stream and another seed a different one."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from simulator.cli import main
from simulator.events import RunManifest

RUN = ["--source", "synthetic", "--vehicles", "150", "--duration", "8", "--sink", "file", "--quiet"]


def run_file(tmp_path: Path, name: str, *extra: str) -> tuple[bytes, RunManifest]:
    out = tmp_path / f"{name}.jsonl"
    assert main([*RUN, "--out", str(out), *extra]) == 0
    manifest = RunManifest.from_json((tmp_path / f"{name}.jsonl.manifest.json").read_text())
    return out.read_bytes(), manifest


def test_help_works():
    result = subprocess.run([sys.executable, "-m", "simulator", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    for option in ("--vehicles", "--stations", "--region", "--duration", "--sessions", "--seed", "--speed",
                   "--progress-interval", "--sink", "--out", "--manifest", "--run-id", "--source"):
        assert option in result.stdout


def test_file_run_manifest_matches_the_file(tmp_path):
    data, manifest = run_file(tmp_path, "a", "--seed", "4")
    events = [json.loads(line) for line in data.splitlines()]
    assert manifest.events_total == len(events) > 0
    assert manifest.counts == dict(Counter(e["event_type"] for e in events))
    assert manifest.sessions_started == manifest.sessions_completed == manifest.counts["session_started"]
    assert manifest.seed == 4 and not manifest.interrupted and manifest.sink == "file"
    assert {e["run_id"] for e in events} == {manifest.run_id}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first, m1 = run_file(tmp_path, "first", "--seed", "9")
    second, m2 = run_file(tmp_path, "second", "--seed", "9")
    third, _ = run_file(tmp_path, "third", "--seed", "10")
    assert first == second and m1.run_id == m2.run_id
    assert first != third


def test_explicit_manifest_path_and_run_id(tmp_path):
    manifest_path = tmp_path / "elsewhere" / "m.json"
    out = tmp_path / "e.jsonl"
    assert main([*RUN, "--out", str(out), "--manifest", str(manifest_path), "--run-id", "test-run"]) == 0
    assert RunManifest.from_json(manifest_path.read_text()).run_id == "test-run"


def test_null_sink_and_unreachable_mongodb(tmp_path, monkeypatch, capsys):
    manifest_path = tmp_path / "null.json"
    assert main(["--source", "synthetic", "--vehicles", "50", "--duration", "2", "--sink", "null", "--quiet",
                 "--manifest", str(manifest_path)]) == 0
    assert RunManifest.from_json(manifest_path.read_text()).sink == "null"
    monkeypatch.setenv("EVCHARGING_MONGO_URL", "mongodb://127.0.0.1:1/")
    monkeypatch.setattr("simulator.reference.SERVER_SELECTION_TIMEOUT_MS", 300)
    assert main(["--sink", "null", "--quiet"]) == 2
    assert "EVCHARGING_MONGO_URL" in capsys.readouterr().err


def test_unreachable_kafka_is_one_clear_message(monkeypatch, capsys):
    monkeypatch.setenv("EVCHARGING_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["--source", "synthetic", "--vehicles", "10", "--duration", "1", "--sink", "kafka", "--quiet"]) == 2
    assert "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err
