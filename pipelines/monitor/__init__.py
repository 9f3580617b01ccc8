"""Drift monitoring (``recops_monitor``): recent batches against the champion's training data.

* :mod:`pipelines.monitor.drift`: the pure metric functions (PSI, Jensen-Shannon, the four signals, the
  verdict);
* :mod:`pipelines.monitor.report`: the HTML report and its plots;
* :mod:`pipelines.monitor.step`: :func:`~pipelines.monitor.step.run_monitor`, the step-contract entry
  (read, assess, write the report, log it to MLflow).

Importing this package imports nothing heavy; each module imports what it needs.
"""
