"""lakeFS: the versioned lake. One resource, handing out the SDK, lakefs-spec and S3-gateway views."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class LakeFSResource(dg.ConfigurableResource):
    """The lakeFS server and the project's repository in it."""

    endpoint: str = Field(description="lakeFS API/UI base URL, e.g. http://127.0.0.1:8000")
    access_key_id: str
    secret_access_key: str = Field(json_schema_extra={"dagster__is_secret": True})
    repository: str = "evcharging"
    default_branch: str = "main"

    def client(self):
        from lakefs.client import Client  # imported lazily: loading the code location stays fast

        return Client(host=self.endpoint, username=self.access_key_id, password=self.secret_access_key)

    def repo(self):
        import lakefs

        return lakefs.Repository(self.repository, client=self.client())

    def filesystem(self):
        """An fsspec filesystem over lakeFS (paths ``lakefs://<repo>/<ref>/<path>``)."""
        from lakefs_spec import LakeFSFileSystem

        return LakeFSFileSystem(host=self.endpoint, username=self.access_key_id, password=self.secret_access_key)

    def with_repository(self, repository: str, default_branch: str = "main") -> LakeFSResource:
        """The same server and keys, on another repository (or another branch as its "main")."""
        return LakeFSResource(endpoint=self.endpoint, access_key_id=self.access_key_id,
                              secret_access_key=self.secret_access_key, repository=repository,
                              default_branch=default_branch)

    def ensure_admin(self, user_name: str) -> bool:
        """Set up a new lakeFS with this resource's keys as its admin's; False when already set up.

        lakeFS creates its admin from LAKEFS_INSTALLATION_* by itself only on a local KV; on
        PostgreSQL (compose, the local stack) a fresh installation waits for this call. The setup
        endpoint needs no credentials, so it runs right after lakeFS is first up.
        """
        import lakefs_sdk

        api = self.client().sdk_client.internal_api
        if api.get_setup_state().state == "initialized":
            return False
        try:
            api.setup(lakefs_sdk.Setup(username=user_name, key=lakefs_sdk.AccessKeyCredentials(
                access_key_id=self.access_key_id, secret_access_key=self.secret_access_key)))
        except lakefs_sdk.exceptions.ApiException as err:
            if err.status != 409:  # 409: another caller set it up in between
                raise
            return False
        return True

    def ensure_repository(self, storage_namespace: str):
        """Create the repository on first use; a no-op when it exists."""
        return self.repo().create(storage_namespace=storage_namespace, default_branch=self.default_branch,
                                  exist_ok=True)

    def commit_url(self, commit_id: str) -> str:
        return f"{self.endpoint.rstrip('/')}/repositories/{self.repository}/commits/{commit_id}"

    def s3a_uri(self, ref: str, path: str = "") -> str:
        """Where Spark writes through lakeFS's S3 gateway: the repository is the bucket."""
        return f"s3a://{self.repository}/{ref}/{path}".rstrip("/")
