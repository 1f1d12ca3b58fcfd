#!/bin/bash
# Runs once, when the postgres service initialises an empty data volume (docker-entrypoint-initdb.d).
# The image has already created POSTGRES_DB (Dagster's storage); lakeFS keeps its key-value store
# in a database of its own. The name comes from LAKEFS_POSTGRES_DB (see infra/docker-compose.yml).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v db="${LAKEFS_POSTGRES_DB:?}" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
