"""Shared fixtures: the real local stack (started once per test session) and one SparkSession.

Integration tests never skip: if a service cannot start, the fixture fails with the stack's own
message (service, problem, log path). Every test that needs the stack — through ``stack_settings``
or any fixture built on it, such as ``spark`` — is marked ``integration`` here, so
``pytest -m "not integration"`` runs without a stack.
"""

from __future__ import annotations

import os
import uuid

import pytest

from evcharging.settings import Settings, load_settings
from evcharging.stack import stack
from evcharging.stack.process import StackError


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if "stack_settings" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """Settings of a running local stack; started here (and stopped after) if it was not running."""
    settings = load_settings()
    already_up = all(row.ok for row in stack.status(settings))
    if not already_up:
        try:
            stack.up(settings, progress=lambda msg: print(f"[stack] {msg}", flush=True))
        except StackError as err:
            pytest.fail(f"the local stack did not start: {err}", pytrace=False)
    settings = load_settings()  # now with the generated secrets
    yield settings
    if not already_up and not os.environ.get("EVCHARGING_KEEP_STACK"):
        stack.down(settings, progress=lambda msg: None)


@pytest.fixture(scope="session")
def spark(stack_settings):
    """One SparkSession for the whole test session (JVM start-up costs 7–17 s)."""
    from evcharging.resources.spark import build_spark_session

    session = build_spark_session(stack_settings, "evcharging-tests")
    yield session
    session.stop()


@pytest.fixture
def unique_name(request) -> str:
    """A short name unique to this test run, for topics, branches and databases."""
    return f"t{uuid.uuid4().hex[:8]}"
