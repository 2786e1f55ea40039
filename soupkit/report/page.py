"""One self-contained HTML page: the summary, every figure as inline SVG, the tables.

The page loads nothing: no script, no stylesheet, no font, no image from anywhere; its Content
Security Policy forbids fetching, so it opens the same offline as online.
"""

from __future__ import annotations

import html
import math
from datetime import datetime

from soupkit.report.figures import DrawnFigure
from soupkit.report.tables import StudyFrames

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1em 2em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
pre.summary { background: #f6f8fa; padding: 0.8em 1em; border-radius: 6px; white-space: pre-wrap; }
nav a { margin-right: 1em; }
figure { margin: 0; } figure svg { max-width: 100%; height: auto; }
figcaption, .muted { color: #666; } .missing { color: #666; font-style: italic; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } td.text { text-align: left; white-space: normal; max-width: 28em; }
tr.FAIL td { background: #fde8e8; } tr.RUNNING td, tr.WAITING td { background: #eef0f3; }
.scroll { overflow-x: auto; }
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td></td>"
    if isinstance(value, float):
        return f"<td>{value:.4f}</td>"
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    text = html.escape(str(value))
    return f'<td class="text">{text}</td>' if not isinstance(value, int) else f"<td>{text}</td>"


def frame_table(frame, row_class: str | None = None) -> str:
    """A polars frame as an HTML table; `row_class` names a column whose value classes each row."""
    if frame.is_empty():
        return '<p class="missing">none</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows(named=True):
        cls = f' class="{html.escape(str(row[row_class]))}"' if row_class else ""
        body.append(f"<tr{cls}>" + "".join(_cell(v) for v in row.values()) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _short(frame, prefixes: dict[str, str]):
    """Column names without their `score:`/`w:` prefixes, with a marker that keeps them apart."""
    names = {}
    for c in frame.columns:
        for prefix, mark in prefixes.items():
            if c.startswith(prefix):
                names[c] = mark + c.removeprefix(prefix)
    return frame.rename(names)


def _figure_html(fig: DrawnFigure) -> str:
    body = fig.svg if fig.svg is not None else f'<p class="missing">not drawn: {html.escape(fig.missing or "")}</p>'
    drawn = "yes" if fig.svg is not None else "no"
    return (f'<section class="figure" id="fig-{fig.key}" data-figure="{fig.key}" data-drawn="{drawn}">'
            f"<h2>{html.escape(fig.title)}</h2><figure>{body}"
            f"<figcaption>{html.escape(fig.caption)}</figcaption></figure></section>")


def render_page(frames: StudyFrames, figures: list[DrawnFigure], summary: str, source: str) -> str:
    title = f"soupkit report: {frames.name}"
    trials = frames.trials
    if not trials.is_empty():
        trials = _short(trials.sort("trial"), {"score:": "", "w:": "w "})
    soups = _short(frames.soups, {"score:": ""})
    nav = "".join(f'<a href="#fig-{f.key}">{html.escape(f.title)}</a>' for f in figures)
    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">study {html.escape(source)}; written {stamp}</p>
<pre class="summary" id="summary">{html.escape(summary)}</pre>
<nav>{nav}<a href="#trials">Trials</a><a href="#soup-table">Soups</a></nav>
{"".join(_figure_html(f) for f in figures)}
<section id="trials"><h2>Trials</h2>
<p class="muted">Every trial with its state, objective, probe scores, mixture weights (w ...), seconds and error.</p>
{frame_table(trials, "state")}</section>
<section id="soup-table"><h2>Soups</h2>{frame_table(soups)}</section>
</body>
</html>
"""
