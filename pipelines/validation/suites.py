"""Versioned expectation suites: JSON files in ``pipelines/expectations/`` loaded at run time.

A suite file lists GX expectations (``type`` + ``kwargs``, as GX writes them, plus the ``view`` they run on)
and recops checks (cross-table and per-value checks GX core does not offer, see
:mod:`pipelines.validation.checks`). Keyword values may be ``{"$PARAMETER": "name"}``; they are filled from
the run's parameters (batch window, params.yaml thresholds, the schema's column rules). An item whose
parameter is ``null`` for this run (no volume history, no time window) is skipped and listed as skipped in
the report.

An item with ``"for_columns": ["id", "label"]`` (instead of a ``column`` keyword) stands for one item per
column of the table whose :attr:`core.schema.Column.text` kind is listed, so which columns follow the text
rules is declared once, in :mod:`core.schema`; the copies are named ``<id>.<column>``.

A missing, unreadable or empty suite file raises :class:`SuiteError`: the gate never runs with nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from core.errors import RecopsError
from core.schema import TABLE_COLUMNS

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

EXPECTATIONS_DIR: Final = Path(__file__).resolve().parents[1] / "expectations"
TABLES: Final = ("events", "catalog")
VIEWS: Final = ("text", "typed")
View = Literal["text", "typed"]


class SuiteError(RecopsError, ValueError):
    """An expectation suite file is missing or invalid (the gate refuses to run without it)."""


@dataclass(frozen=True)
class ItemSpec:
    """One expectation or check of a suite, before its parameters are filled in."""

    id: str
    type: str
    kwargs: dict[str, Any]
    view: View = "text"
    meta: dict[str, Any] = field(default_factory=dict)

    def columns(self) -> list[str]:
        """The columns this item reads (``column`` and ``column_list`` keyword arguments)."""
        cols = []
        if isinstance(self.kwargs.get("column"), str):
            cols.append(self.kwargs["column"])
        if isinstance(self.kwargs.get("column_list"), list):
            cols.extend(str(c) for c in self.kwargs["column_list"])
        return cols


@dataclass(frozen=True)
class SuiteSpec:
    """A loaded suite: GX expectations and recops checks for one table."""

    name: str
    table: str
    version: int
    path: Path
    expectations: tuple[ItemSpec, ...]
    checks: tuple[ItemSpec, ...]

    @property
    def size(self) -> int:
        return len(self.expectations) + len(self.checks)


def load_suite(name: str, directory: Path = EXPECTATIONS_DIR) -> SuiteSpec:
    """Load and check ``<directory>/<name>.json``.

    Raises:
        SuiteError: the file is missing, not JSON, or holds no expectations or a malformed item.
    """
    path = directory / f"{name}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SuiteError(f"expectation suite not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SuiteError(f"expectation suite {path} cannot be read: {exc}") from exc
    if not isinstance(raw, dict):
        raise SuiteError(f"expectation suite {path} must hold a JSON object")
    table = raw.get("table")
    if table not in TABLES:
        raise SuiteError(f"expectation suite {path}: 'table' must be one of {TABLES}, not {table!r}")
    version = raw.get("version")
    if not isinstance(version, int):
        raise SuiteError(f"expectation suite {path}: 'version' must be an integer")
    expectations = tuple(
        spec
        for i, item in enumerate(_list(path, raw, "expectations"))
        for spec in _expand(path, i, item, table)
    )
    checks = tuple(
        spec for i, item in enumerate(_list(path, raw, "checks")) for spec in _expand(path, i, item, table)
    )
    from pipelines.validation.checks import CHECKS

    unknown = [f"{c.id} ({c.type})" for c in checks if c.type not in CHECKS]
    if unknown:
        raise SuiteError(f"expectation suite {path}: unknown recops check type(s): {', '.join(unknown)}")
    if not expectations:
        raise SuiteError(f"expectation suite {path} has no expectations: refusing to validate with it")
    ids = [it.id for it in expectations + checks]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise SuiteError(f"expectation suite {path}: duplicate ids {duplicated}")
    return SuiteSpec(
        name=str(raw.get("name", name)),
        table=table,
        version=version,
        path=path,
        expectations=expectations,
        checks=checks,
    )


def _list(path: Path, raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise SuiteError(f"expectation suite {path}: '{key}' must be a list")
    return value


def _expand(path: Path, index: int, item: Any, table: str) -> list[ItemSpec]:
    """The item, or one copy per schema column of the kinds its ``for_columns`` lists."""
    if not isinstance(item, dict) or "for_columns" not in item:
        return [_item(path, index, item)]
    where = f"expectation suite {path}, item {index}"
    kinds = item["for_columns"]
    if not isinstance(kinds, list) or not kinds or not all(k in ("id", "label") for k in kinds):
        raise SuiteError(f"{where}: 'for_columns' must be a non-empty list of 'id' and/or 'label'")
    kwargs = item.get("kwargs", {})
    if not isinstance(kwargs, dict) or "column" in kwargs:
        raise SuiteError(f"{where}: an item with 'for_columns' takes no 'column' keyword")
    base = {k: v for k, v in item.items() if k != "for_columns"}
    columns = [c.name for c in TABLE_COLUMNS[table] if c.text in kinds]
    return [
        _item(
            path,
            index,
            {
                **base,
                "kwargs": {**kwargs, "column": column},
                **({"id": f"{base['id']}.{column}"} if isinstance(base.get("id"), str) else {}),
            },
        )
        for column in columns
    ]


def _item(path: Path, index: int, item: Any) -> ItemSpec:
    where = f"expectation suite {path}, item {index}"
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise SuiteError(f"{where}: needs a 'type' string")
    kwargs = item.get("kwargs", {})
    meta = item.get("meta", {})
    view = item.get("view", "text")
    if not isinstance(kwargs, dict) or not isinstance(meta, dict):
        raise SuiteError(f"{where}: 'kwargs' and 'meta' must be objects")
    if view not in VIEWS:
        raise SuiteError(f"{where}: 'view' must be one of {VIEWS}")
    spec = ItemSpec(id="", type=item["type"], kwargs=kwargs, view=view, meta=meta)
    short = spec.type.removeprefix("expect_")
    for prefix in ("column_values_to_", "column_value_", "table_"):
        short = short.removeprefix(prefix)
    default_id = ".".join([short, *spec.columns()])
    item_id = item.get("id", default_id)
    if not isinstance(item_id, str) or not item_id:
        raise SuiteError(f"{where}: 'id' must be a non-empty string")
    return ItemSpec(id=item_id, type=spec.type, kwargs=kwargs, view=view, meta=meta)


def fill_parameters(kwargs: dict[str, Any], parameters: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Replace ``{"$PARAMETER": name}`` values.

    Returns:
        The filled-in keywords and the names of referenced parameters that are null for this run (when
        there are any, the item does not apply to this batch and is skipped).

    Raises:
        SuiteError: a referenced parameter is not defined at all (a typo in the suite).
    """
    out: dict[str, Any] = {}
    unset: list[str] = []
    for key, value in kwargs.items():
        if isinstance(value, dict) and set(value) == {"$PARAMETER"}:
            name = value["$PARAMETER"]
            if name not in parameters:
                raise SuiteError(f"unknown suite parameter {name!r} (known: {sorted(parameters)})")
            if parameters[name] is None:
                unset.append(str(name))
            out[key] = parameters[name]
        else:
            out[key] = value
    return out, unset


def note(spec: ItemSpec, parameters: dict[str, Any]) -> str:
    """The item's ``meta.note`` with ``{parameter}`` fields filled in ('' when there is none)."""
    template = spec.meta.get("note")
    if not isinstance(template, str):
        return ""

    class _Lenient(dict[str, Any]):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    return template.format_map(_Lenient(parameters))


def build_gx_suite(name: str, items: list[tuple[ItemSpec, dict[str, Any], str]]) -> ExpectationSuite:
    """A GX ``ExpectationSuite`` from ``(item, filled-in keywords, note)`` triples (imports GX).

    Raises:
        SuiteError: an item names an expectation type GX does not know, or its keywords are invalid.
    """
    import great_expectations as gx
    from great_expectations.exceptions.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    from pipelines.validation.gx_runner import gx_context

    gx_context()  # GX suites need an active context even before they are saved
    suite = gx.ExpectationSuite(name=name)
    for spec, kwargs, item_note in items:
        try:
            impl = get_expectation_impl(spec.type)
        except ExpectationNotFoundError as exc:
            raise SuiteError(
                f"suite {name}: unknown GX expectation type {spec.type!r} (item {spec.id})"
            ) from exc
        try:
            expectation = impl(**kwargs, meta={**spec.meta, "recops_id": spec.id, "recops_note": item_note})
        except Exception as exc:  # pydantic validation errors of the expectation's fields
            first = str(exc).splitlines()[0][:200]
            raise SuiteError(
                f"suite {name}: invalid keywords for {spec.type} (item {spec.id}): {first}"
            ) from exc
        suite.add_expectation(expectation)
    return suite
