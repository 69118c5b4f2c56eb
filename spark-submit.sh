#!/usr/bin/env bash
# Submit a batchml job to Spark with its packed Python environment:
#   ./spark-submit.sh [--master M] [--deploy-mode client|cluster] [--env ENV]
#                     [--conf-file FILE] [--delta connector|embedded]
#                     [other spark-submit options…] JOB [job options…]
# The same as `batchml submit …`; ./spark-submit.sh --help says more. The job's exit
# code is this script's exit code.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if command -v uv >/dev/null 2>&1; then
  # the project's locked environment, synced first when the lock changed
  exec uv run --project "$here" --locked --quiet batchml submit "$@"
elif [ -x "$here/.venv/bin/batchml" ]; then
  exec "$here/.venv/bin/batchml" submit "$@"
else
  echo "spark-submit.sh: error: neither uv nor $here/.venv (python3 -m pip install uv; uv sync)" >&2
  exit 3
fi
