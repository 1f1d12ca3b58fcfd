"""Settings: every field is documented in .env.example, secrets are generated once and kept out of git."""

from __future__ import annotations

import re

import pytest

from evcharging.settings import (
    ENV_PREFIX, LOCAL_SECRET_GENERATORS, PROJECT_DIR, InvalidSettingError, Settings, ensure_local_secrets,
    load_settings,
)


def test_every_setting_is_in_env_example():
    documented = set(re.findall(rf"({ENV_PREFIX}[A-Z0-9_]+)=", (PROJECT_DIR / ".env.example").read_text()))
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    assert fields - documented == set()
    assert documented - fields == set()


def test_local_secrets_are_generated_once_and_private(tmp_path, monkeypatch):
    for name in LOCAL_SECRET_GENERATORS:
        monkeypatch.delenv(f"{ENV_PREFIX}{name.upper()}", raising=False)
    settings = ensure_local_secrets(Settings(data_dir=tmp_path))
    assert all(getattr(settings, name) for name in LOCAL_SECRET_GENERATORS)
    assert (tmp_path / "secrets.env").stat().st_mode & 0o077 == 0
    again = ensure_local_secrets(Settings(data_dir=tmp_path))
    assert again.lakefs_secret_access_key == settings.lakefs_secret_access_key
    assert len(settings.lakefs_access_key_id) == 20 and settings.lakefs_access_key_id.startswith("AKIA")


def test_invalid_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("EVCHARGING_KAFKA_EVENTS_PARTITIONS", "many")
    with pytest.raises(InvalidSettingError, match="EVCHARGING_KAFKA_EVENTS_PARTITIONS='many'"):
        load_settings()


def test_a_stream_name_with_a_dash_is_refused(monkeypatch):
    monkeypatch.setenv("EVCHARGING_STREAM_NAME", "events-eu")  # its tags would start like stream "events"'s
    with pytest.raises(InvalidSettingError, match="EVCHARGING_STREAM_NAME='events-eu': .*letters, digits"):
        load_settings()


def test_no_credential_literal_in_the_code():
    """Secrets come only from settings: no generated-looking key or password in a tracked source file."""
    suspicious = re.compile(r"(AKIA[0-9A-Z]{16}|(password|secret)[\"']?\s*[:=]\s*[\"'][^\"'{$]{6,}[\"'])", re.I)
    offenders = [str(p.relative_to(PROJECT_DIR)) for folder in ("evcharging", "simulator", "infra")
                 for p in (PROJECT_DIR / folder).rglob("*") if p.is_file() and p.suffix in {".py", ".yaml", ".yml", ".sh", ".properties"}
                 and suspicious.search(p.read_text(errors="ignore"))]
    assert offenders == []
