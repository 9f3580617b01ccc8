"""Kill a real process at an exact step: SIGKILL inside ``os.rename`` / ``os.replace`` on a matching path.

:func:`kill_env` returns an environment whose ``PYTHONPATH`` starts with a folder holding a
``sitecustomize.py``. Python imports it at start-up; it does nothing unless ``RECOPS_TEST_KILL_AT`` is set
and the program is the one named (``recops`` by default, ``-c`` for ``python -c``). Then it wraps
``os.rename`` and ``os.replace``: the Nth call whose ``"<src> -> <dst>"`` matches the regular expression
sends SIGKILL to its own process, just before or just after the real call. The variable is removed from
the environment at start-up, so child processes (``dvc``) run unpatched.

No timing is involved: the process dies at that call or not at all (then its exit status is not -9 and
the test says so).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Literal

KILL_VAR = "RECOPS_TEST_KILL_AT"
RECOPS = Path(sys.executable).parent / "recops"
KILLED = -signal.SIGKILL

SITECUSTOMIZE = """
import json as _json
import os as _os
import re as _re
import signal as _signal
import sys as _sys

_spec = _os.environ.pop("RECOPS_TEST_KILL_AT", None)
if _spec:
    _cfg = _json.loads(_spec)
    if _os.path.basename(_sys.argv[0] if _sys.argv else "") == _cfg["program"]:
        _pattern = _re.compile(_cfg["match"])
        _seen = [0]

        def _wrap(real):
            def wrapper(src, dst, *args, **kwargs):
                hit = bool(_pattern.search(f"{_os.fspath(src)} -> {_os.fspath(dst)}"))
                if hit:
                    _seen[0] += 1
                last = hit and _seen[0] == _cfg["nth"]
                if last and _cfg["when"] == "before":
                    _os.kill(_os.getpid(), _signal.SIGKILL)
                result = real(src, dst, *args, **kwargs)
                if last and _cfg["when"] == "after":
                    _os.kill(_os.getpid(), _signal.SIGKILL)
                return result

            return wrapper

        for _name in _cfg["funcs"]:
            setattr(_os, _name, _wrap(getattr(_os, _name)))
"""


def kill_env(
    base: dict[str, str],
    folder: Path,
    *,
    match: str,
    nth: int = 1,
    when: Literal["before", "after"] = "before",
    funcs: tuple[str, ...] = ("rename", "replace"),
    program: str = "recops",
) -> dict[str, str]:
    """``base`` plus the killer: SIGKILL at the ``nth`` rename/replace matching ``match`` (``src -> dst``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env = dict(base)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [base.get("PYTHONPATH", "")])])
    env[KILL_VAR] = json.dumps(
        {"match": match, "nth": nth, "when": when, "funcs": list(funcs), "program": program}
    )
    return env


def recops_env(repo: Path, runtime: Path, params_file: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``recops`` command run in the throw-away repository ``repo``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOPS_") and k != KILL_VAR}
    env.update(
        COLUMNS="200",
        NO_COLOR="1",
        RECOPS_PROJECT_DIR=str(repo),
        RECOPS_PARAMS_FILE=str(params_file),
        RECOPS_RUNTIME_DIR=str(runtime),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(extra)
    return env


def run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command and return it (no check: the caller asserts the exit status)."""
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def recops(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``recops`` command."""
    return run([str(RECOPS), *args], env, cwd)
