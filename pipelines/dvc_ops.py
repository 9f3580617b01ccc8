"""Thin wrappers around the DVC command line: add, push (verified), pull, cloud status, S3 remote setup.

Every call runs the ``dvc`` executable of this interpreter's environment in a subprocess (the CLI is the
interface DVC keeps stable; its Python API is not), with analytics off and the output captured. A failing
call raises :class:`DvcError` carrying DVC's own message, so the CLI prints it as one ``error:`` line.

Push is only a success when ``dvc status -c`` afterwards reports nothing that the remote lacks: DVC does not
verify uploads itself (treeverse/dvc#10498). Downloads are re-hashed when the remote has ``verify = true``
(both remotes in ``.dvc/config`` have it), so a corrupted remote object makes :func:`dvc_pull` fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import RecopsError

#: States in ``dvc status -c`` output that mean the remote does not hold an object we have or need.
MISSING_ON_REMOTE = frozenset({"new", "missing", "modified"})
DEFAULT_TIMEOUT_S = 3600.0
_CORRUPTED = re.compile(r"corrupted cache file '([^']+)'")


class DvcError(RecopsError):
    """A DVC command failed; the message holds the command and DVC's own error text.

    Attributes:
        output: Everything DVC printed (stdout then stderr), secrets redacted; empty if it never ran.
    """

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class DvcHashMismatch(DvcError):
    """A downloaded object did not match its hash (``verify = true``): the remote copy is corrupt."""


class PushFailed(DvcError):
    """The data was placed and recorded in ``data.dvc``, but the push to the remote failed (exit 3).

    Nothing is lost: the new version is in the local DVC cache. A rerun of the push completes it
    (``recops data push`` or ``dvc push``); ``recops data verify`` lists what the remote lacks.
    """

    exit_code = 3


@dataclass(frozen=True)
class DvcOutput:
    """What one DVC command printed."""

    args: tuple[str, ...]
    stdout: str
    stderr: str


def dvc_executable() -> Path:
    """The ``dvc`` script next to this Python interpreter, else the first ``dvc`` on ``PATH``."""
    beside = Path(sys.executable).parent / "dvc"
    if beside.is_file():
        return beside
    found = shutil.which("dvc")
    if found is None:
        raise DvcError("the dvc executable was not found next to Python or on PATH: install dvc[s3]")
    return Path(found)


def _dvc_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["DVC_NO_ANALYTICS"] = "1"
    if extra:
        env.update(extra)
    return env


def _error_text(stdout: str, stderr: str) -> str:
    lines = [ln.strip() for ln in (stderr or stdout).splitlines() if ln.strip()]
    errors = [ln[ln.index("ERROR:") :] for ln in lines if "ERROR:" in ln]
    return "\n".join(errors or lines[-5:]) or "(no output)"


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def run_dvc(
    args: Sequence[str],
    repo_root: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    secrets: Sequence[str] = (),
) -> DvcOutput:
    """Run ``dvc ARGS`` inside ``repo_root`` and return its output; raise :class:`DvcError` if it fails.

    DVC runs with ``--wait-for-lock``: when another DVC process in the same workspace holds the repository
    lock, this call waits (up to ``timeout_s``) instead of failing at once (treeverse/dvc#5795).

    Args:
        args: The DVC sub-command and its arguments, e.g. ``["push", "-r", "local"]``.
        repo_root: The DVC repository (the folder holding ``.dvc/``).
        env: Extra environment variables (e.g. AWS credentials) on top of this process's environment.
        timeout_s: Kill DVC after this many seconds.
        secrets: Values (credentials among ``args``) replaced by ``***`` in error messages.
    """
    if list(args[:1]) != ["init"] and not (repo_root / ".dvc").is_dir():
        raise DvcError(f"{repo_root} is not a DVC repository (no .dvc folder): run `dvc init` there")
    cmd = [str(dvc_executable()), "--wait-for-lock", *args]
    shown = _redact(" ".join(args), secrets)
    try:
        proc = subprocess.run(
            cmd,
            cwd=repo_root,
            env=_dvc_env(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DvcError(f"`dvc {shown}` did not finish within {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        message = _redact(_error_text(proc.stdout, proc.stderr), secrets)
        output = _redact(proc.stdout + proc.stderr, secrets)
        raise DvcError(f"`dvc {shown}` failed (exit {proc.returncode}): {message}", output=output)
    return DvcOutput(args=tuple(args), stdout=proc.stdout, stderr=proc.stderr)


def repo_relative(path: Path, repo_root: Path) -> str:
    """``path`` as a POSIX path relative to ``repo_root``; raise :class:`DvcError` if it lies outside."""
    resolved = (path if path.is_absolute() else repo_root / path).resolve()
    try:
        return resolved.relative_to(repo_root.resolve()).as_posix()
    except ValueError as exc:
        raise DvcError(
            f"{path} is outside the DVC repository {repo_root}: DVC can only track paths inside it"
        ) from exc


def _remote_args(remote: str | None) -> list[str]:
    return ["-r", remote] if remote else []


def dvc_add(path: Path, repo_root: Path) -> Path:
    """``dvc add PATH``: hash ``path`` into the cache and rewrite ``PATH.dvc``; return that ``.dvc`` file.

    With ``core.autostage`` the ``.dvc`` file and ``.gitignore`` are staged in git as well.
    """
    rel = repo_relative(path, repo_root)
    if not (repo_root / rel).exists():
        raise DvcError(f"cannot `dvc add` {rel}: it does not exist")
    run_dvc(["add", rel], repo_root)
    return repo_root / f"{rel}.dvc"


def dvc_status_cloud(
    repo_root: Path, remote: str | None = None, targets: Sequence[Path] = ()
) -> dict[str, Any]:
    """``dvc status -c [-r REMOTE] --json``: ``{}`` when cache and remote agree, else path -> state.

    States: ``new`` (in the cache, not on the remote), ``deleted`` (on the remote, not in the cache),
    ``missing`` (in neither), ``modified``.
    """
    args = ["status", "-c", "--json", *_remote_args(remote)]
    args += [repo_relative(t, repo_root) for t in targets]
    out = run_dvc(args, repo_root)
    text = out.stdout.strip()
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DvcError(f"`dvc {' '.join(args)}` printed something that is not JSON: {text[:300]}") from exc
    if not isinstance(parsed, dict):
        raise DvcError(f"`dvc {' '.join(args)}` printed {type(parsed).__name__}, expected an object")
    return parsed


def missing_on_remote(status: Mapping[str, Any]) -> dict[str, str]:
    """The entries of a :func:`dvc_status_cloud` result that the remote lacks (anything but ``deleted``)."""
    return {path: str(state) for path, state in status.items() if str(state) in MISSING_ON_REMOTE}


def dvc_push(
    repo_root: Path, remote: str | None = None, targets: Sequence[Path] = (), *, verify: bool = True
) -> dict[str, Any]:
    """``dvc push [-r REMOTE] [TARGETS]``, then check ``dvc status -c``; return that status.

    Raises:
        DvcError: DVC failed, or (``verify``) the remote still lacks objects after the push.
    """
    rel_targets = [repo_relative(t, repo_root) for t in targets]
    run_dvc(["push", *_remote_args(remote), *rel_targets], repo_root)
    if not verify:
        return {}
    status = dvc_status_cloud(repo_root, remote, targets)
    lacking = missing_on_remote(status)
    if lacking:
        shown = ", ".join(f"{p} ({s})" for p, s in sorted(lacking.items())[:10])
        raise DvcError(
            f"dvc push reported success but remote {remote or '(default)'} still lacks {len(lacking)} "
            f"object(s): {shown}; re-run the push"
        )
    return status


def dvc_pull(repo_root: Path, remote: str | None = None, targets: Sequence[Path] = ()) -> DvcOutput:
    """``dvc pull [-r REMOTE] [TARGETS]`` (run verbose, so a hash mismatch can be named).

    Raises:
        DvcHashMismatch: with ``verify = true`` on the remote, a downloaded object did not match its hash;
            DVC discarded it (nothing corrupt enters the cache) and the checkout failed.
        DvcError: any other failure.
    """
    rel_targets = [repo_relative(t, repo_root) for t in targets]
    try:
        return run_dvc(["pull", "-v", *_remote_args(remote), *rel_targets], repo_root)
    except DvcError as exc:
        corrupt = sorted(set(_CORRUPTED.findall(exc.output)))
        if not corrupt:
            raise
        objects = ", ".join(Path(c).parent.name + Path(c).name for c in corrupt)  # .../md5/ab/cdef -> abcdef
        raise DvcHashMismatch(
            f"hash mismatch: {len(corrupt)} object(s) downloaded from remote {remote or '(default)'} did not "
            f"match their MD5 and were discarded ({objects}); the remote copy is corrupt. Delete the bad "
            f"object on the remote, then `dvc push` from a good cache. DVC said: {exc}",
            output=exc.output,
        ) from exc


def configure_s3_remote(
    repo_root: Path,
    endpoint_url: str | None,
    bucket: str | None = None,
    *,
    name: str = "s3",
    prefix: str = "store",
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region: str | None = None,
) -> None:
    """Point the S3 remote ``name`` at an endpoint/bucket, writing only ``.dvc/config.local`` (gitignored).

    The committed ``.dvc/config`` keeps the remote's name, default URL and ``verify = true``; endpoint,
    bucket and credentials are per machine and never committed. Without credentials DVC falls back to the
    usual AWS chain (environment variables, ``~/.aws``).

    Args:
        repo_root: The DVC repository.
        endpoint_url: e.g. ``http://127.0.0.1:9000`` for MinIO/moto; ``None`` keeps AWS's endpoint.
        bucket: Bucket to use instead of the committed URL's; objects go under ``s3://BUCKET/PREFIX``.
        name: The remote's name in ``.dvc/config`` (it must exist there or in ``config.local``).
        prefix: Key prefix inside the bucket.
        access_key_id: Written to ``config.local`` as ``access_key_id`` when given.
        secret_access_key: Written to ``config.local`` as ``secret_access_key`` when given.
        region: Written to ``config.local`` as ``region`` when given.
    """
    settings: list[tuple[str, str]] = []
    if bucket:
        settings.append(
            ("url", f"s3://{bucket}/{prefix.strip('/')}" if prefix.strip("/") else f"s3://{bucket}")
        )
    if endpoint_url:
        settings.append(("endpointurl", endpoint_url))
    if access_key_id:
        settings.append(("access_key_id", access_key_id))
    if secret_access_key:
        settings.append(("secret_access_key", secret_access_key))
    if region:
        settings.append(("region", region))
    hidden = [v for v in (access_key_id, secret_access_key) if v]
    for option, value in settings:
        run_dvc(["remote", "modify", "--local", name, option, value], repo_root, secrets=hidden)


def prepare_remote(repo_root: Path, remote: str, *, endpoint_url: str | None, bucket: str | None) -> None:
    """Before using remote ``s3``: write the configured endpoint/bucket (``RECOPS_S3_ENDPOINT_URL``,
    ``RECOPS_S3_BUCKET``) to ``config.local``. Other remotes, or nothing configured: no-op.

    Credentials are not written here; DVC reads them from the AWS chain (``AWS_ACCESS_KEY_ID`` ...).
    """
    if remote == "s3" and (endpoint_url or bucket):
        configure_s3_remote(repo_root, endpoint_url, bucket, name=remote)
