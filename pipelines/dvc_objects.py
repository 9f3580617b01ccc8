"""The DVC cache and remotes as object stores: where an object lives, which remotes exist, what they hold.

DVC 3 keeps every object under ``files/md5/<first 2>/<rest>`` (``.dir`` listings included), in the cache and
on every remote. These helpers read the repository's DVC config (``.dvc/config``, ``.dvc/config.local``) and
use ``dvc ls-url`` / ``dvc get-url`` with ``remote://<name>`` URLs, so they work for every remote type with
the repository's own settings (endpoint and credentials included).
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.dvc_ops import DvcError, DvcHashMismatch, run_dvc


def _config_value(repo_root: Path, section: str, option: str) -> tuple[str, Path] | None:
    """``section.option`` from ``.dvc/config.local`` or ``.dvc/config`` (local wins) and the file's folder."""
    import configparser

    for name in ("config.local", "config"):
        path = repo_root / ".dvc" / name
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as exc:
            raise DvcError(f"{path} is not a valid DVC config file: {exc}") from exc
        if parser.has_option(section, option):
            return parser.get(section, option), path.parent
    return None


def dvc_cache_dir(repo_root: Path) -> Path:
    """The repository's DVC cache folder (``cache.dir`` of the repository config, else ``.dvc/cache``)."""
    found = _config_value(repo_root, "cache", "dir")
    if found is None:
        return repo_root / ".dvc" / "cache"
    value, base = found
    return Path(value) if Path(value).is_absolute() else (base / value).resolve()


def cache_object_path(repo_root: Path, md5: str) -> Path:
    """Where the DVC 3 cache keeps object ``md5`` (``files/md5/<2>/<rest>``; ``.dir`` listings included)."""
    return dvc_cache_dir(repo_root) / "files" / "md5" / md5[:2] / md5[2:]


def remote_names(repo_root: Path) -> list[str]:
    """The names of the configured DVC remotes (``dvc remote list``)."""
    out = run_dvc(["remote", "list"], repo_root)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def check_remote(repo_root: Path, remote: str | None) -> None:
    """Refuse a remote name that is not configured (before anything is changed), naming the known ones."""
    if remote is None:
        return
    if any(_config_value(repo_root, f'{q}remote "{remote}"{q}', "url") for q in ("'", "")):
        return  # declared in the repository's config: no need to ask DVC (about a second)
    known = remote_names(repo_root)
    if remote not in known:
        raise DvcError(
            f"DVC remote {remote!r} is not configured (known: {', '.join(known) or 'none'}); nothing was "
            "changed: pass --remote with one of them, or add it with `dvc remote add`"
        )


def remote_objects(repo_root: Path, remote: str | None) -> set[str]:
    """Every object on a DVC remote, as its ``md5`` (``.dir`` listings included).

    Listed with ``dvc ls-url -R remote://<name>/files/md5``, so it works for every remote type with the
    repository's configuration (endpoint and credentials included). A remote that holds nothing yet lists
    as empty. (``ls-url --size`` prints rounded sizes, so sizes are not compared.)
    """
    name = remote or _default_remote(repo_root)
    try:
        out = run_dvc(["ls-url", "-R", f"remote://{name}/files/md5"], repo_root)
    except DvcError as exc:
        if "does not exist" in str(exc) or "No such file" in str(exc):
            return set()
        raise
    objects: set[str] = set()
    for line in out.stdout.splitlines():
        key = line.strip()
        if "/" in key:
            prefix, rest = key.rsplit("/", 1)
            objects.add(prefix[-2:] + rest)
    return objects


def fetch_dir_listing(repo_root: Path, remote: str | None, md5: str) -> bool:
    """Download the ``.dir`` listing ``md5`` from a remote into the DVC cache; False if the remote lacks it.

    Only that small object is fetched (``dvc get-url remote://<name>/files/md5/...``), and only when its
    bytes match its MD5 does it enter the cache.

    Raises:
        DvcHashMismatch: the remote's copy is corrupt.
        DvcError: the remote could not be asked (unreachable, no credentials, no default remote).
    """
    import hashlib

    name = remote or _default_remote(repo_root)
    dest = cache_object_path(repo_root, md5)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-get")
    try:
        run_dvc(["get-url", f"remote://{name}/files/md5/{md5[:2]}/{md5[2:]}", str(tmp)], repo_root)
    except DvcError as exc:
        tmp.unlink(missing_ok=True)
        if "does not exist" in str(exc):
            return False
        raise
    if hashlib.md5(tmp.read_bytes(), usedforsecurity=False).hexdigest() != md5.removesuffix(".dir"):
        tmp.unlink()
        raise DvcHashMismatch(
            f"the listing {md5} on remote {name} does not match its MD5: the remote copy is corrupt"
        )
    os.replace(tmp, dest)
    return True


def _default_remote(repo_root: Path) -> str:
    found = _config_value(repo_root, "core", "remote")
    if found is None:
        raise DvcError(f"no default DVC remote in {repo_root / '.dvc' / 'config'}: pass --remote")
    return found[0]
