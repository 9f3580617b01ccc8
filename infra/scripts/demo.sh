#!/usr/bin/env bash
# `make demo`: the whole workflow that exists so far, end to end, on the embedded defaults
# (SQLite for MLflow and the audit trail, local files for artifacts and the DVC remote).
# generate -> validate (one bad batch is quarantined) -> publish -> dvc repro -> register -> promote -> recommend
set -euo pipefail
cd "$(dirname "$0")/../.."

export MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false
export OPENBLAS_NUM_THREADS=1
export COLUMNS="${COLUMNS:-140}"  # wide tables in logs too
step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }

landing="runtime/landing/demo"

step "1/7 settings"
recops info

step "2/7 generate the default synthetic shop (params.yaml: generate)"
if [ -d "$landing" ] && [ -n "$(ls -A "$landing" 2>/dev/null)" ]; then
  echo "reusing $landing (delete it to regenerate)"
else
  recops data generate --out "$landing"
fi

step "3/7 validate a deliberately broken batch: it must be quarantined and stop"
bad="runtime/landing/demo-bad/2026-02-01"
rm -rf "$(dirname "$bad")" && mkdir -p "$bad"
python - "$landing" "$bad" <<'PY'
import sys
from pathlib import Path
import pandas as pd
src = sorted(Path(sys.argv[1]).iterdir())[-1]
dst = Path(sys.argv[2])
ev = pd.read_parquet(src / "events.parquet")
ev.loc[ev.index[:50], "price"] = -1.0           # negative prices
ev.loc[ev.index[50:60], "user_id"] = None        # missing user ids
ev.to_parquet(dst / "events.parquet", index=False)
pd.read_parquet(src / "catalog.parquet").to_parquet(dst / "catalog.parquet", index=False)
PY
if recops validate "$bad"; then
  echo "the broken batch passed validation: the gate is broken" >&2
  exit 1
fi
echo "-> quarantined as expected; see runtime/quarantine/$(basename "$bad")/"

step "4/7 validate + publish every landed batch into data/ (DVC-tracked, pushed to the local remote)"
recops publish "$landing"/*

step "5/7 dvc repro: features -> train@{families} -> evaluate (tracked in MLflow)"
dvc repro
dvc push --quiet   # models and features too, so a fresh workspace can `dvc pull` them
python - <<'PY'   # the headline numbers (all of them: `dvc metrics show`)
import json
metrics = json.load(open("artifacts/metrics/metrics.json"))
print(f"{'family':<18} {'valid ndcg@10':>13} {'test ndcg@10':>12} {'recall@10':>9} {'coverage@10':>11}")
for family, m in metrics.items():
    print(f"{family:<18} {m['valid_ndcg_at_10']:>13.4f} {m['ndcg_at_10']:>12.4f} {m['recall_at_10']:>9.4f} {m['coverage_at_10']:>11.4f}")
print("(the family is chosen on validation; test is reported once)")
PY

step "6/7 register the best model as challenger, then promote it through the gate"
recops register
recops promote || echo "(promotion blocked by the gate: the champion stays; see the table above)"
recops audit

step "7/7 recommendations for a sample shopper, loaded from the registry exactly as the scorer will"
user=$(python - <<'PY'
from pipelines.datastore import read_published
from core.settings import get_settings
ev, _ = read_published(get_settings().data_dir)
print(ev["user_id"].value_counts().index[0])
PY
)
recops recommend --user "$user" --pseudonym --k 10

cat <<'MSG'

Where to look next:
  MLflow UI      .venv/bin/mlflow ui --backend-store-uri sqlite:///runtime/mlflow.db --host 127.0.0.1 --port 5000
  DVC            source .venv/bin/activate; dvc metrics show; dvc plots show (opens dvc_plots/index.html)
  Data Docs      runtime/quarantine/2026-02-01/data_docs/index.html  (plus the batch copy, unexpected rows, result JSON)
  Registry       .venv/bin/recops audit          .venv/bin/recops rollback
MSG
