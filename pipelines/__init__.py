"""recops pipeline steps: ingest, validate, publish, features, train, evaluate, registry.

Every step is a plain function (pure where it can be) plus a `recops` CLI sub-command; DVC stages and
Airflow tasks call the same functions. Nothing here reads configuration or touches disk at import time.
"""
