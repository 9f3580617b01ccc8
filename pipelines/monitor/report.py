"""The monitor's report: one self-contained HTML page (plots embedded as PNG) and the plots as files.

Pure given its inputs: figures are drawn from the assessment, the page from a summary dict, the figures'
PNG bytes and the assessment; nothing here reads or writes files (see :mod:`pipelines.monitor.step`).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.monitor.drift import OTHER, DriftAssessment, Verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pipelines.monitor.online import OnlineMetrics

#: Buckets shown in a distribution plot (the largest by reference share; the rest summed as "rest").
MAX_BARS = 20
TITLES = {
    "category_mix": "Category mix (share of events)",
    "item_popularity": "Item popularity (share of events, reference top items + other)",
    "events_per_user": "Events per shopper and day (share of shopper-days)",
}


def _bars(reference: Any, current: Any) -> tuple[list[str], list[float], list[float]]:
    import pandas as pd

    frame = pd.DataFrame({"reference": reference, "recent": current}).fillna(0.0)
    frame.index = frame.index.astype(str)
    if frame.index.str.contains("-").any() or frame.index.str.endswith("+").any():  # bins: natural order
        order = sorted(frame.index, key=lambda label: int(label.split("-")[0].rstrip("+")))
        frame = frame.loc[order]
    else:
        frame = frame.sort_values("reference", ascending=False)
        other = frame.loc[[OTHER]] if OTHER in frame.index else frame.iloc[:0]
        rest = frame.drop(index=[OTHER], errors="ignore")
        shown, tail = rest.iloc[: MAX_BARS - 1], rest.iloc[MAX_BARS - 1 :]
        if len(tail):
            shown = pd.concat([shown, pd.DataFrame([tail.sum()], index=["rest"])])
        frame = pd.concat([shown, other])
    return list(frame.index), frame["reference"].tolist(), frame["recent"].tolist()


def drift_figures(assessment: DriftAssessment) -> dict[str, Figure]:
    """``overview`` (each signal against its threshold) and one reference-vs-recent chart per distribution."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figures: dict[str, Figure] = {}
    fig = Figure(figsize=(7, 3.2), dpi=100)
    ax = fig.subplots()
    names = [s.name for s in assessment.signals]
    values = [s.value if math.isfinite(s.value) else 0.0 for s in assessment.signals]
    colours = ["#c0392b" if s.drifted else "#2e86c1" for s in assessment.signals]
    ax.barh(names, values, color=colours)
    ax.scatter([s.threshold for s in assessment.signals], names, marker="|", s=400, color="black", zorder=3)
    ax.invert_yaxis()
    ax.set_xlabel("value (bar) and threshold (black line); red: above the threshold")
    fig.tight_layout()
    figures["overview"] = fig

    for name, (reference, current) in assessment.distributions.items():
        labels, ref, cur = _bars(reference, current)
        fig = Figure(figsize=(9, 3.6), dpi=100)
        ax = fig.subplots()
        positions = range(len(labels))
        ax.bar([p - 0.2 for p in positions], ref, width=0.4, label="champion's training data")
        ax.bar([p + 0.2 for p in positions], cur, width=0.4, label="recent batches")
        ax.set_xticks(list(positions), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(TITLES.get(name, name), fontsize=10)
        ax.set_ylabel("share")
        ax.legend(fontsize=8)
        fig.tight_layout()
        figures[name] = fig
    return figures


def png_bytes(figure: Figure) -> bytes:
    """A figure as PNG bytes without a timestamp in its metadata."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def render_html(
    summary: Mapping[str, Any],
    verdict: Verdict,
    assessment: DriftAssessment | None,
    images: Mapping[str, bytes],
    online: OnlineMetrics | None = None,
    online_note: str = "",
) -> str:
    """The report page: verdict and reasons, the signals table, the online metrics, the plots, the facts."""
    esc = html.escape
    colours = {
        "drift": "#c0392b",
        "online_degraded": "#c0392b",
        "drift_no_new_data": "#d68910",
        "stable": "#1e8449",
    }
    colour = colours.get(verdict.status, "#555")
    rows = ""
    if assessment is not None:
        for s in assessment.signals:
            flag = "above" if s.drifted else "ok"
            rows += (
                f"<tr><td>{esc(s.name)}</td><td>{esc(s.measure)}</td><td>{s.value:.4f}</td>"
                f"<td>{s.threshold:g}</td><td class='{flag}'>{flag}</td></tr>"
            )
    reasons = "".join(f"<li>{esc(r)}</li>" for r in verdict.reasons) or "<li>none</li>"
    facts = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in summary.items())
    plots = "".join(
        f"<h3>{esc(TITLES.get(name, name))}</h3>"
        f"<img alt='{esc(name)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>"
        for name, data in images.items()
    )
    table = (
        "<table><tr><th>signal</th><th>measure</th><th>value</th><th>threshold</th><th></th></tr>"
        f"{rows}</table>"
        if rows
        else "<p>No assessment (see the reasons).</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>recops drift report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1000px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
.above {{ color: #c0392b; font-weight: bold; }} .ok {{ color: #1e8449; }}
.verdict {{ color: {colour}; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>recops drift report</h1>
<h2 class="verdict">{esc(verdict.status)}{" — retraining requested" if verdict.retrain else ""}</h2>
<ul>{reasons}</ul>
{table}
<h2>Online metrics (scoring service feedback)</h2>
{online_table(online, online_note)}
<h2>Plots</h2>{plots or "<p>none</p>"}
<h2>Run</h2><table>{facts}</table>
</body></html>
"""


def online_table(online: OnlineMetrics | None, note: str = "") -> str:
    """The online metrics per model version and A/B variant as an HTML table (or why there is none)."""
    esc = html.escape
    if online is None or not online.groups:
        return f"<p>{esc(note or (online.note() if online else 'no feedback store'))}</p>"

    def rate(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.4f}"

    rows = ""
    for g in online.groups:
        flagged = g in online.flagged()
        judged = (
            "below the threshold" if flagged else ("ok" if g.enough else "too few impressions: not judged")
        )
        rows += (
            f"<tr><td>v{g.model_version}</td><td>{esc(g.variant)}</td><td>{g.served}</td><td>{g.impressions}</td>"
            f"<td>{g.clicks}</td><td>{g.add_to_cart}</td><td>{g.purchases}</td><td>{rate(g.click_through)}</td>"
            f"<td>{rate(g.conversion)}</td><td class='{'above' if flagged else 'ok'}'>{esc(judged)}</td></tr>"
        )
    window = f"{online.window_start.isoformat()} .. {online.window_end.isoformat()}"
    return (
        f"<p>Window {esc(window)}; click-through = clicked / impressed (recommendation, item) pairs, "
        f"conversion = purchased / impressed; the champion is held to click-through >= "
        f"{online.min_click_through:g} once it has {online.min_impressions} impressions.</p>"
        "<table><tr><th>version</th><th>variant</th><th>served</th><th>impressions</th><th>clicks</th>"
        "<th>add to cart</th><th>purchases</th><th>click-through</th><th>conversion</th><th></th></tr>"
        f"{rows}</table>"
    )
