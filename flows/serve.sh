#!/usr/bin/env bash
# `make serve`: a local Prefect server on 127.0.0.1:4200 (its state in .prefect/), the
# ssiuu-local process work pool, the deployments of prefect.yaml and a worker in the
# foreground. Ctrl-C stops the worker, then the server (a second Ctrl-C kills a worker that
# lingers: Prefect 3.8's worker does not always exit on the first).
set -euo pipefail
set -m                     # job control: Ctrl-C reaches the foreground worker, not the server
cd "$(dirname "$0")/.."    # the project root: `prefect deploy` records it ({{ $PWD }})
export PREFECT_HOME="$PWD/.prefect" PREFECT_API_URL="http://127.0.0.1:4200/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
prefect server start --host 127.0.0.1 --port 4200 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" || true' EXIT
prefect server status --wait --timeout 90 >/dev/null
prefect work-pool inspect ssiuu-local >/dev/null 2>&1 \
    || prefect work-pool create ssiuu-local --type process
prefect --no-prompt deploy --all
prefect worker start --pool ssiuu-local
