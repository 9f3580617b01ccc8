"""Which worker ran a task: the name Airflow records on each task instance (``TaskInstance.hostname``).

Airflow asks ``[core] hostname_callable`` for it (by default the machine's FQDN, so two worker processes on
one machine look alike). ``infra/scripts/stack.sh`` starts its Celery worker with
``AIRFLOW__CORE__HOSTNAME_CALLABLE=pipelines.orchestration.workers.worker_name`` and
``RECOPS_WORKER_NAME=<name>``, so the task instances it ran carry that name in the UI and the REST API.
"""

from __future__ import annotations

import os
import socket
from typing import Final

#: The environment variable holding the worker's name.
WORKER_NAME_VARIABLE: Final = "RECOPS_WORKER_NAME"


def worker_name() -> str:
    """``RECOPS_WORKER_NAME`` when set, else the machine's fully qualified domain name (Airflow's default)."""
    return os.environ.get(WORKER_NAME_VARIABLE, "").strip() or socket.getfqdn()
