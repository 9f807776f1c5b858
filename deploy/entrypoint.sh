#!/usr/bin/env bash
# Container entrypoint (also runs natively): ROLE [ARGS...]
#   proxy      migrate the database, then serve the proxy (ARGS go to `sprout-proxy serve`)
#   serve      serve without migrating (replicas, after the migration Job)
#   migrate    migrate the database and exit (Kubernetes Job, compose one-off)
#   worker     serve a model (ARGS go to `python -m worker`)
#   meter      the worker's meter-only mode, beside vLLM or llama.cpp
#   evaluator  one evaluator run (ARGS go to `python -m evaluator run-once`; CronJob)
set -euo pipefail
export LITELLM_LOCAL_MODEL_COST_MAP=True
python=${PYTHON:-python3}
role=${1:-proxy}
shift || true
case "$role" in
  proxy)
    "$python" -m proxy migrate
    exec "$python" -m proxy serve --host "${PROXY_HOST:-0.0.0.0}" --no-migrate "$@"
    ;;
  serve) exec "$python" -m proxy serve --host "${PROXY_HOST:-0.0.0.0}" --no-migrate "$@" ;;
  migrate) exec "$python" -m proxy migrate "$@" ;;
  worker) exec "$python" -m worker --host "${WORKER_HOST:-0.0.0.0}" "$@" ;;
  meter) exec "$python" -m worker --meter-only --host "${WORKER_HOST:-0.0.0.0}" "$@" ;;
  evaluator) exec "$python" -m evaluator run-once "$@" ;;
  *)
    echo "usage: entrypoint.sh proxy|serve|migrate|worker|meter|evaluator [ARGS...]" >&2
    exit 2
    ;;
esac
