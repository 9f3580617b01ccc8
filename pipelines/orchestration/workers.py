"""Which worker ran a task: the name Airflow records on each task instance (``TaskInstance.hostname``).

Airflow asks ``[core] hostname_callable`` for it (by default the machine's fully qualified name, so two
worker processes on one machine look alike). ``infra/scripts/stack.sh`` starts its Celery worker with
``AIRFLOW__CORE__HOSTNAME_CALLABLE=pipelines.orchestration.workers.worker_name`` and
``RECOPS_WORKER_NAME=<name>``, so the task instances it ran carry that name in the UI and the REST API.
Like the rest of :mod:`pipelines.orchestration`, this module does not import Airflow.
"""

from __future__ import annotations

import os
import socket
from typing import Final

#: The environment variable holding the worker's name.
WORKER_NAME_VARIABLE: Final = "RECOPS_WORKER_NAME"


def machine_name() -> str:
    """The machine's canonical name, resolved as Airflow's default ``hostname_callable`` does.

    ``socket.getfqdn()`` can answer ``localhost`` where the resolver lists that alias first; Airflow asks
    ``getaddrinfo`` for the canonical name of ``gethostname()`` instead, and so does this.
    """
    name = socket.gethostname()
    try:
        addresses = socket.getaddrinfo(name, None, 0, socket.SOCK_DGRAM, 0, socket.AI_CANONNAME)
    except OSError:
        return name
    return next((canonical for *_, canonical, _ in addresses if canonical), name)


def worker_name() -> str:
    """``RECOPS_WORKER_NAME`` when set (surrounding blanks dropped), else :func:`machine_name`."""
    return os.environ.get(WORKER_NAME_VARIABLE, "").strip() or machine_name()
