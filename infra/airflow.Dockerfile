# The Airflow image for the official Helm chart (infra/helm/airflow-values.yaml): apache/airflow with the
# recops code, its pinned dependencies and the DAGs.
#   docker build -f infra/airflow.Dockerfile -t recops-airflow:0.1.0 .     (build context: the repository root)
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements.txt constraints.txt /opt/recops/
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && pip install --no-cache-dir -r /opt/recops/requirements.txt -c /opt/recops/constraints.txt

COPY --chown=airflow:root pyproject.toml README.md params.yaml /opt/recops/
COPY --chown=airflow:root core /opt/recops/core
COPY --chown=airflow:root registry /opt/recops/registry
COPY --chown=airflow:root pipelines /opt/recops/pipelines
COPY --chown=airflow:root models /opt/recops/models
COPY --chown=airflow:root service /opt/recops/service
COPY --chown=airflow:root dags /opt/recops/dags
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e /opt/recops

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/recops/dags \
    MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false
