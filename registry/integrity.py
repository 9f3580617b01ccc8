"""Package checksums: what registration records on a model version, and what the loader verifies.

A model version carries two tags written by :func:`registry.register.register_best`:

* ``recops.package_files``: JSON ``{relative path: sha256}`` of every file of the registered package;
* ``recops.package_digest``: :func:`models.package.digest_of` that manifest, which is also the
  ``recops.package_digest`` the training run recorded for the package folder it logged (registration
  refuses a logged package whose bytes no longer match it).

The loader (:mod:`registry.loader`) compares a download, and a cached copy, with these before it opens or
caches anything. Versions registered before the tags existed fall back to their source run's
``recops.package_digest`` (every run of ``pipelines.train`` has one); a version with neither is
*unverifiable*: refused when ``RECOPS_ENV=production``, loaded with a warning otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from models.package import digest_of
from registry.tags import TAG_PACKAGE_DIGEST, TAG_PACKAGE_FILES

#: MLflow refuses longer model-version tag values; a package has a handful of files.
MAX_MANIFEST_CHARS = 5000


@dataclass(frozen=True)
class ExpectedChecksums:
    """What a package must hash to: per file (a version's manifest), or only its digest (a training run)."""

    files: dict[str, str] | None
    digest: str | None
    source: str  # where the figures come from, for messages; "" when nothing is recorded

    @property
    def known(self) -> bool:
        return self.files is not None or self.digest is not None


UNKNOWN = ExpectedChecksums(files=None, digest=None, source="")


def manifest_tags(files: Mapping[str, str]) -> dict[str, str]:
    """The model-version tags that record ``files`` (``{relative path: sha256}``)."""
    text = json.dumps(dict(files), sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_MANIFEST_CHARS:
        raise ValueError(f"package manifest of {len(files)} files is too long for an MLflow tag")
    return {TAG_PACKAGE_FILES: text, TAG_PACKAGE_DIGEST: digest_of(dict(files))}


def expected_checksums(
    version_tags: Mapping[str, str], run_tags: Mapping[str, str] | None, what: str
) -> ExpectedChecksums:
    """The checksums a version's package must match: its own manifest, else its run's digest.

    Raises:
        ValueError: the version's manifest is unreadable or contradicts its digest (tampered tags).
    """
    raw = version_tags.get(TAG_PACKAGE_FILES)
    if raw:
        try:
            files = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{what}: the recorded package checksums are not valid JSON") from exc
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise ValueError(f"{what}: the recorded package checksums are not a file -> sha256 map")
        digest = digest_of(files)
        recorded = version_tags.get(TAG_PACKAGE_DIGEST)
        if recorded and recorded != digest:
            raise ValueError(f"{what}: the recorded package checksums do not match the recorded digest")
        return ExpectedChecksums(files=dict(files), digest=digest, source="the model version's checksums")
    recorded_digest = version_tags.get(TAG_PACKAGE_DIGEST) or (run_tags or {}).get(TAG_PACKAGE_DIGEST)
    if recorded_digest:
        return ExpectedChecksums(
            files=None, digest=str(recorded_digest), source="the training run's package digest"
        )
    return UNKNOWN


def mismatches(actual: Mapping[str, str], expected: ExpectedChecksums) -> list[str]:
    """What differs between the files at hand (``{relative path: sha256}``) and ``expected`` (empty: none).

    Each entry names a file, so a person knows what to look at.
    """
    if expected.files is not None:
        problems = []
        for rel in sorted(expected.files):
            if rel not in actual:
                problems.append(f"{rel} is missing")
            elif actual[rel] != expected.files[rel]:
                problems.append(
                    f"{rel} has sha256 {actual[rel][:12]}..., expected {expected.files[rel][:12]}..."
                )
        extra = sorted(set(actual) - set(expected.files))
        problems += [f"{rel} was not in the registered package" for rel in extra]
        return problems
    if expected.digest is not None and digest_of(dict(actual)) != expected.digest:
        return [
            f"the package digest is {digest_of(dict(actual))[:12]}..., expected {expected.digest[:12]}... "
            f"(one of {', '.join(sorted(actual)) or 'no files'} differs, or a file was added or removed)"
        ]
    return []
