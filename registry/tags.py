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
#: Hash of the code the stages depend on, working-tree contents (:func:`pipelines.lineage.code_hash`).
TAG_CODE_HASH = "code_hash"
LINEAGE_TAGS = (
    "git_commit",
    "data_md5",
    "dvc_lock_hash",
    "params_hash",
    TAG_CODE_HASH,
    "pipeline_run_id",
    "family",
)
#: On a model run (written by ``pipelines.train``) and on a model version (written at registration):
#: :func:`models.package.package_digest` of the logged ``package/`` folder.
TAG_PACKAGE_DIGEST = "recops.package_digest"
#: On a model version: JSON ``{relative path: sha256}`` of every file of the registered package.
TAG_PACKAGE_FILES = "recops.package_files"
