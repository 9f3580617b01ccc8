-- Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
-- POSTGRES_DB (recops: audit trail and metadata) is created by the image itself; MLflow and Airflow get
-- their own databases, owned by the same role.
CREATE DATABASE mlflow;
CREATE DATABASE airflow;
