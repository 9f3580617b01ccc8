"""Names of the MLflow tags that tie runs, pipeline runs and model versions together.

Written by tracking in ``pipelines`` and read by registration here, so they live in the lower layer.
"""

from __future__ import annotations

TAG_PIPELINE_KEY = "recops.pipeline_key"
TAG_KIND = "recops.kind"
TAG_FAMILY = "family"
TAG_SUPERSEDED = "recops.superseded"
#: On a parent run: ``recops.scored.<family>`` = the model run the evaluate stage scored for that family.
TAG_SCORED_PREFIX = "recops.scored."
TAG_LINEAGE_KEY = "lineage_key"
TAG_SOURCE_RUN = "source_run_id"
LINEAGE_TAGS = ("git_commit", "data_md5", "dvc_lock_hash", "params_hash", "pipeline_run_id", "family")
