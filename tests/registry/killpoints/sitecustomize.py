"""Kill points for the crash tests: a process started with this folder first on ``PYTHONPATH`` loads this
file at start-up (Python's ``sitecustomize`` hook). It does nothing unless ``RECOPS_TEST_KILL_AT`` is set:

``RECOPS_TEST_KILL_AT=before_alias:<alias>`` / ``after_alias:<alias>`` make the process SIGKILL itself right
before / right after ``MlflowClient.set_registered_model_alias`` runs for ``<alias>``: the exact step at which
a crash used to leave MLflow and the audit trail disagreeing. The patch is applied when MLflow's client
module is first imported, so nothing else about the process changes (MLflow is not imported early).
"""

from __future__ import annotations

import os

_SPEC = os.environ.get("RECOPS_TEST_KILL_AT", "")

if _SPEC:
    import importlib.abc
    import importlib.util
    import signal
    import sys
    from typing import Any

    _WHEN, _, _ALIAS = _SPEC.partition(":")
    _TARGET = "mlflow.tracking.client"

    def _die() -> None:
        sys.stdout.flush()
        sys.stderr.write(f"killpoint {_SPEC}: SIGKILL\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def _patch(module: Any) -> None:
        cls = module.MlflowClient
        real = cls.set_registered_model_alias

        def set_registered_model_alias(self: Any, name: str, alias: str, version: Any) -> Any:
            if alias == _ALIAS and _WHEN == "before_alias":
                _die()
            result = real(self, name, alias, version)
            if alias == _ALIAS and _WHEN == "after_alias":
                _die()
            return result

        cls.set_registered_model_alias = set_registered_model_alias

    class _PatchOnImport(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            if fullname != _TARGET:
                return None
            sys.meta_path.remove(self)  # one shot: find the real module the normal way
            spec = importlib.util.find_spec(fullname)
            if spec is None or spec.loader is None:
                return spec
            loader: Any = spec.loader
            real_exec = loader.exec_module

            def exec_module(module: Any) -> None:
                real_exec(module)
                _patch(module)

            loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _PatchOnImport())
