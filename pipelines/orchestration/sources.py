"""Where the batch of a logical date comes from: the synthetic generator or a landing folder.

* ``generator``: the deterministic generator of ``params.yaml`` ``generate:``. Its days depend on the whole
  configured period (arrivals of users and items are drawn for all of it), so the batch of day D is the
  D-th batch of the full dataset, never a shorter run. The dataset is written once into a cache folder
  keyed by the generator params and the pseudonymisation key
  (``<landing>/generator/<fingerprint>/YYYY-MM-DD/``); later logical dates read it from there.
* ``landing``: a producer drops ``<folder>/YYYY-MM-DD/`` (events + catalogue, Parquet or CSV); the default
  folder is ``<landing>/incoming``.

Only paths are decided here; the generator itself is called from :mod:`pipelines.orchestration.tasks`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Final, Literal

from core.errors import RecopsError
from core.settings import Settings
from pipelines.orchestration.context import resolve
from pipelines.params import GenerateParams

Source = Literal["generator", "landing"]
SOURCES: Final[tuple[str, ...]] = ("generator", "landing")
GENERATOR_SET: Final = "generator"
INCOMING_SET: Final = "incoming"


class BatchNotAvailable(RecopsError):
    """No batch for the requested day (not landed yet, or outside the generator's period)."""


def check_source(source: str) -> Source:
    """``source`` if it is a known batch source, else a clear error."""
    if source == "generator":
        return "generator"
    if source == "landing":
        return "landing"
    raise RecopsError(f"unknown batch source {source!r}; use one of: {', '.join(SOURCES)}")


def generator_cache(settings: Settings, params: GenerateParams) -> Path:
    """The folder holding the generated dataset of ``params`` (a fingerprint of the params and the key).

    The fingerprint is an HMAC under the pseudonymisation key, so a new key gets new batches (its
    pseudonyms differ) without the key itself showing in a path.
    """
    key = settings.pseudonymization_key.get_secret_value().encode()
    payload = json.dumps(params.model_dump(mode="json"), sort_keys=True).encode()
    fingerprint = hmac.new(key, payload, hashlib.sha256).hexdigest()[:12]
    return settings.landing_dir / GENERATOR_SET / fingerprint


def generator_period(params: GenerateParams) -> tuple[date, date]:
    """First and last day the generator produces."""
    return params.start, params.start + timedelta(days=params.days - 1)


def check_generated_day(day: date, params: GenerateParams) -> None:
    """Raise :class:`BatchNotAvailable` when ``day`` is outside the generator's period."""
    first, last = generator_period(params)
    if not first <= day <= last:
        raise BatchNotAvailable(
            f"the generator produces {first.isoformat()} .. {last.isoformat()} (params.yaml generate: "
            f"start, days); there is no generated batch for {day.isoformat()}"
        )


def landing_folder(settings: Settings, landing: str) -> Path:
    """The landing folder of the ``landing`` source: ``landing`` (absolute or project-relative), else
    ``<landing_dir>/incoming``."""
    return resolve(landing, settings) if landing.strip() else settings.landing_dir / INCOMING_SET


def batch_folder(folder: Path, day: date) -> Path:
    """Where the batch of ``day`` lies under a landing or generator folder."""
    return folder / day.isoformat()


def landed(folder: Path) -> bool:
    """True when ``folder`` holds a batch (an events file in any accepted format)."""
    return folder.is_dir() and any(folder.glob("events.*"))
