"""MongoResource: the MongoDB wire-protocol server (FerretDB locally, mongod in production)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dagster as dg
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConfigurationError, PyMongoError

from evcharging.settings import ENV_PREFIX

URL_SETTING = f"{ENV_PREFIX}MONGO_URL"


class MongoUnavailableError(RuntimeError):
    """The configured MongoDB cannot be used: a bad URL, or no server answering it."""


def redacted(url: str) -> str:
    """``url`` with any password replaced, fit for an error message or a log."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


class MongoResource(dg.ConfigurableResource):
    """A MongoDB database, reached with PyMongo's async client.

    Open one client per ``asyncio.run`` (an async client belongs to the event loop that uses it):
    ``async with mongo.open_database() as db: ...``.
    """

    url: str
    database: str
    server_selection_timeout_ms: int = 5000

    def client(self) -> AsyncMongoClient:
        """A new client; it connects lazily, so an unreachable server shows on first use."""
        try:
            return AsyncMongoClient(self.url, serverSelectionTimeoutMS=self.server_selection_timeout_ms, tz_aware=True)
        except ConfigurationError as exc:  # InvalidURI is a ConfigurationError
            raise MongoUnavailableError(
                f"{URL_SETTING}={redacted(self.url)!r} is not a usable MongoDB URL: {exc}"
            ) from None

    @asynccontextmanager
    async def open_database(self) -> AsyncIterator[AsyncDatabase]:
        """The configured database after a ping, or one clear error naming the URL and setting."""
        client = self.client()
        try:
            try:
                await client.admin.command("ping")
            except PyMongoError as exc:
                # The driver's message lists its whole topology; the first clause says what failed.
                cause = str(exc).split(" (configured timeouts")[0].split(", Timeout:")[0]
                raise MongoUnavailableError(
                    f"MongoDB at {redacted(self.url)} is not usable ({type(exc).__name__}: {cause}; waited "
                    f"{self.server_selection_timeout_ms} ms). Start the local stack (`evcharging stack up`) "
                    f"or point {URL_SETTING} at a running server."
                ) from exc
            yield client[self.database]
        finally:
            await client.close()
