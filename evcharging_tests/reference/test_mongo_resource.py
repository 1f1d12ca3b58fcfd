"""A misconfigured or unreachable MongoDB gives one readable error naming the URL (password hidden)
and the setting to fix, within the short server-selection timeout, instead of a driver stack dump."""

import asyncio
import socket
import time

import pytest

from evcharging.resources.mongo import MongoResource, MongoUnavailableError, redacted


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def ping(resource: MongoResource) -> None:
    async with resource.open_database():
        pass


def test_an_unreachable_server_names_the_url_and_the_setting():
    port = unused_port()
    resource = MongoResource(url=f"mongodb://evc:hunter2@127.0.0.1:{port}/", database="x", server_selection_timeout_ms=300)
    started = time.monotonic()
    with pytest.raises(MongoUnavailableError) as error:
        asyncio.run(ping(resource))
    message = str(error.value)
    assert f"mongodb://evc:***@127.0.0.1:{port}/" in message and "EVCHARGING_MONGO_URL" in message
    assert "hunter2" not in message and "Topology" not in message
    assert time.monotonic() - started < 5


def test_a_malformed_url_names_the_setting():
    with pytest.raises(MongoUnavailableError, match="EVCHARGING_MONGO_URL='http://127.0.0.1:27017' is not a usable MongoDB URL"):
        MongoResource(url="http://127.0.0.1:27017", database="x").client()


def test_redaction_keeps_everything_but_the_password():
    assert redacted("mongodb://u:p@h:1/db?x=1") == "mongodb://u:***@h:1/db?x=1"
    assert redacted("mongodb://h:1/") == "mongodb://h:1/"
