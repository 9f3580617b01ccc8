"""The registry layer: the MLflow client, aliases, registration, the promotion gate, rollback, the audit
trail and the verified model loader.

It sits above ``models`` and ``core`` and below ``pipelines`` and ``service``, which both use it and never
import each other (see docs/architecture.md, "Layers").
"""
