#!/usr/bin/env bash
# `make demo`: the whole workflow end to end through the Airflow 3 DAGs, on the embedded defaults
# (SQLite for the Airflow metadata, MLflow and the audit trail; local files for artifacts and the DVC remote).
#   history (the ingest steps in one go) -> recops_ingest x the last days -> a broken batch through
#   recops_ingest (fails at the gate, quarantined) -> recops_train (features, train x families, evaluate,
#   register, promote) -> recommend -> the scoring service (online seed, `recops serve` on 127.0.0.1, a
#   shopper's events change the next answer, feedback, stop; infra/scripts/demo_service.py)
# The DAG runs are `dag.test()` runs (infra/scripts/demo_dags.py); `make stack-up` runs the same DAGs under a
# real scheduler (docs/operations.md, "Airflow: the DAGs").
set -euo pipefail
cd "$(dirname "$0")/../.."

export MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false
export OPENBLAS_NUM_THREADS=1
export COLUMNS="${COLUMNS:-140}"  # wide tables in logs too
step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }
started=$SECONDS

step "1/6 settings"
recops info

step "2/6 the workflow through the Airflow DAGs (dag.test, SQLite metadata under runtime/airflow/)"
python infra/scripts/demo_dags.py

step "3/6 what recops_train trained (the family is chosen on validation; test is reported once)"
dvc push --quiet   # models and features too, so a fresh workspace can `dvc pull` them
python - <<'PY'   # the headline numbers (all of them: `dvc metrics show`)
import json
metrics = json.load(open("artifacts/metrics/metrics.json"))
print(f"{'family':<18} {'valid ndcg@10':>13} {'test ndcg@10':>12} {'recall@10':>9} {'coverage@10':>11}")
for family, m in metrics.items():
    print(f"{family:<18} {m['valid_ndcg_at_10']:>13.4f} {m['ndcg_at_10']:>12.4f} {m['recall_at_10']:>9.4f} {m['coverage_at_10']:>11.4f}")
PY

step "4/6 the registry's audit trail (register and promote ran as tasks of recops_train)"
recops audit

step "5/6 recommendations for a sample shopper, loaded from the registry exactly as the scorer will"
user=$(python - <<'PY'
from pipelines.datastore import read_published
from core.settings import get_settings
ev, _ = read_published(get_settings().data_dir)
print(ev["user_id"].value_counts().index[0])
PY
)
recops recommend --user "$user" --pseudonym --k 10

step "6/6 the scoring service: seed the online store, serve on 127.0.0.1, a shopper's events change the answer"
python infra/scripts/demo_service.py

quarantined=$(ls -d runtime/quarantine/*/ 2>/dev/null | tail -n 1)
cat <<MSG

Demo finished in $((SECONDS - started)) s. Where to look next:
  Airflow UI     .venv/bin/python infra/scripts/demo_dags.py --ui   then http://127.0.0.1:8080 (user admin; the
                 password is printed once, kept in runtime/airflow/passwords.json): the runs above (the grid, the
                 mapped train tasks, the failed ingest run and its task logs, the Asset events). No scheduler.
  Airflow stack  make stack-up: the same DAGs under a real scheduler, LocalExecutor, PostgreSQL, an MLflow
                 server (docs/operations.md "Running the local stack"); make stack-down stops it.
  MLflow UI      .venv/bin/mlflow ui --backend-store-uri sqlite:///runtime/mlflow.db --host 127.0.0.1 --port 5000
  Quarantine     ${quarantined:-runtime/quarantine/<day>/}data_docs/index.html  (plus the batch copy, unexpected rows, result JSON)
  Task output    runtime/airflow/demo-runs.log  (everything the DAG runs printed)
  DVC            source .venv/bin/activate; dvc metrics show; dvc plots show (opens dvc_plots/index.html)
  Registry       .venv/bin/recops audit          .venv/bin/recops rollback
  Scoring        .venv/bin/recops serve --host 127.0.0.1 --port 8000 --workers 2   then http://127.0.0.1:8000/docs
                 (service log of the demo: runtime/serve-demo.log; runbook: docs/operations.md "Scoring service")
MSG
