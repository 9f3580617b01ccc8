"""Run GX expectation suites on in-memory DataFrames, and turn GX results into :class:`Outcome` objects.

One ephemeral GX context per process (building it and importing GX costs seconds); each run adds a suite
and a ``ValidationDefinition`` under fresh names, runs it with ``result_format=COMPLETE`` (every unexpected
row index, not the first 200) and removes both again, so reruns never see stale objects (GX#10418).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.validation.report import Outcome, shorten, show

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite, ExpectationSuiteValidationResult

_LOCK = threading.RLock()
_STATE: dict[str, Any] = {}
_HEAVY_RESULT_KEYS = ("unexpected_list", "unexpected_index_list", "unexpected_index_query", "unexpected_rows")


def gx_context() -> Any:
    """The process-wide ephemeral GX context with one pandas data source (created on first use)."""
    with _LOCK:
        return _context()


def _context() -> Any:
    if "context" not in _STATE:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        _STATE["context"] = context
        _STATE["source"] = context.data_sources.add_or_update_pandas("recops")
        _STATE["batch_definitions"] = {}
    return _STATE["context"]


def _batch_definition(asset_name: str) -> Any:
    definitions: dict[str, Any] = _STATE["batch_definitions"]
    if asset_name not in definitions:
        asset = _STATE["source"].add_dataframe_asset(name=asset_name)
        definitions[asset_name] = asset.add_batch_definition_whole_dataframe("whole")
    return definitions[asset_name]


def run_suite(
    asset_name: str, frame: pd.DataFrame, suite: ExpectationSuite
) -> ExpectationSuiteValidationResult:
    """Validate ``frame`` with ``suite`` via a ``ValidationDefinition``, keeping every unexpected index."""
    import great_expectations as gx

    with _LOCK:
        context = _context()
        batch_definition = _batch_definition(asset_name)
        _forget(context, suite.name, asset_name)  # left over if an earlier run was interrupted
        saved = context.suites.add(suite)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=asset_name, data=batch_definition, suite=saved)
        )
        try:
            result: ExpectationSuiteValidationResult = definition.run(
                batch_parameters={"dataframe": frame},
                result_format={"result_format": "COMPLETE", "partial_unexpected_count": 10},
            )
            return result
        finally:
            _forget(context, suite.name, asset_name)


def _forget(context: Any, suite_name: str, definition_name: str) -> None:
    from great_expectations.exceptions.exceptions import DataContextError

    for store, name in ((context.validation_definitions, definition_name), (context.suites, suite_name)):
        with contextlib.suppress(DataContextError):
            store.delete(name)


def raised(exception_info: Any) -> str | None:
    """The message of an exception GX caught while evaluating an expectation, else ``None``."""
    if not isinstance(exception_info, dict):
        return None
    infos = [exception_info, *[v for v in exception_info.values() if isinstance(v, dict)]]
    for info in infos:
        if info.get("raised_exception"):
            return str(info.get("exception_message") or "an exception was raised")
    return None


def to_outcomes(table: str, result: ExpectationSuiteValidationResult) -> list[Outcome]:
    """One :class:`Outcome` per GX expectation result (failing row positions included)."""
    out = []
    for res in result.results:
        config = res.expectation_config
        kwargs = dict(config.kwargs) if config is not None else {}
        meta = dict(config.meta or {}) if config is not None else {}
        kind = config.type if config is not None else "unknown_expectation"
        column = kwargs.get("column") or (
            ",".join(kwargs["column_list"]) if kwargs.get("column_list") else None
        )
        body = res.result or {}
        error = raised(res.exception_info)
        indexes = body.get("unexpected_index_list") or []
        rows = tuple(sorted({int(i) for i in indexes if isinstance(i, int | float)}))
        count = body.get("unexpected_count")
        success = bool(res.success) and error is None
        if error is not None:
            detail = f"expectation raised an error: {shorten(error, 200)}"
        elif success:
            detail = "ok"
        else:
            detail = _detail(kind, kwargs, body)
            if meta.get("recops_note"):
                detail = f"{detail} ({meta['recops_note']})"
        out.append(
            Outcome(
                table=table,
                check_id=str(meta.get("recops_id", kind)),
                expectation=kind,
                column=column,
                success=success,
                detail=detail,
                unexpected_count=int(count) if count is not None else None,
                rows=rows if not success else (),
                source="gx",
            )
        )
    return out


def _detail(kind: str, kwargs: dict[str, Any], body: dict[str, Any]) -> str:
    observed = body.get("observed_value")
    if kind == "expect_table_columns_to_match_set":
        mismatched = (body.get("details") or {}).get("mismatched") or {}
        parts = []
        if mismatched.get("missing"):
            parts.append("missing " + ", ".join(shorten(str(c), 40) for c in mismatched["missing"]))
        if mismatched.get("unexpected"):
            parts.append("unexpected " + ", ".join(shorten(str(c), 40) for c in mismatched["unexpected"]))
        return "; ".join(parts) or f"columns {show(observed, 200)}"
    if kind.startswith("expect_table_row_count"):
        return f"{observed} rows, expected {_bounds(kwargs)}"
    if observed is not None and "unexpected_count" not in body:
        return f"observed {show(observed, 80)}, expected {_bounds(kwargs)}"
    percent = body.get("unexpected_percent")
    share = f" ({percent:.2f}%)" if isinstance(percent, int | float) else ""
    if kind == "expect_column_values_to_not_be_null":
        return f"null values{share}"
    examples = body.get("partial_unexpected_list") or []
    shown = ", ".join(show(v, 40) for v in dict.fromkeys(map(_hashable, examples[:10])))
    expected = _bounds(kwargs)
    return f"unexpected values{share}, e.g. {shown}" + (f"; expected {expected}" if expected != "any" else "")


def _bounds(kwargs: dict[str, Any]) -> str:
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if "value_set" in kwargs:
        return f"in {show(sorted(map(str, kwargs['value_set'])), 80)}"
    if "regex" in kwargs:
        return f"not matching {kwargs['regex']!r}"
    if lo is None and hi is None:
        return "any"
    left = "(" if kwargs.get("strict_min") else "["
    right = ")" if kwargs.get("strict_max") else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def trim_result(result: ExpectationSuiteValidationResult, max_chars: int = 200) -> None:
    """Drop full unexpected lists (the rows go to a Parquet file) and cut long example values, in place."""
    for res in result.results:
        body: dict[str, Any] = res.result or {}
        for key in _HEAVY_RESULT_KEYS:
            body.pop(key, None)
        if isinstance(body.get("partial_unexpected_list"), list):
            body["partial_unexpected_list"] = [_cut(v, max_chars) for v in body["partial_unexpected_list"]]
        if isinstance(body.get("partial_unexpected_counts"), list):
            for entry in body["partial_unexpected_counts"]:
                if isinstance(entry, dict) and "value" in entry:
                    entry["value"] = _cut(entry["value"], max_chars)
        if isinstance(res.exception_info, dict):
            for info in [res.exception_info, *res.exception_info.values()]:
                if isinstance(info, dict) and info.get("exception_traceback"):
                    info["exception_traceback"] = _cut(info["exception_traceback"], 4000)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return str(value)
    return value


def _cut(value: Any, limit: int) -> Any:
    return shorten(value, limit) if isinstance(value, str) and len(value) > limit else value


def render_data_docs(result: ExpectationSuiteValidationResult) -> str:
    """GX's own Data Docs page for one validation result (the page the Data Docs site would show)."""
    from great_expectations.render.renderer.page_renderer import ValidationResultsPageRenderer
    from great_expectations.render.view.view import DefaultJinjaPageView

    with _LOCK:  # one view per process: its jinja environment caches the compiled templates
        if "page_view" not in _STATE:
            _STATE["page_view"] = DefaultJinjaPageView()
            _STATE["page_renderer"] = ValidationResultsPageRenderer()
        document = _STATE["page_renderer"].render(result)
        return str(_STATE["page_view"].render(document))
