"""The site's leaderboard pages: an index and one sortable, filterable page per benchmark and setting, each
with a plot of value against year drawn as inline SVG (no script, no network). The data comes from
:func:`mlatlas.outputs.leaderboards.build_leaderboards`; :meth:`SiteContent.pages` adds these pages."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

from mlatlas.outputs.leaderboards import FIRST_HAND, RERUN, SECOND_HAND, Board, build_leaderboards
from mlatlas.outputs.site.render import front_matter, number

if TYPE_CHECKING:  # pragma: no cover
    from mlatlas.outputs.site.pages import GeneratedPage, SiteContent

INDEX_URI = "leaderboards/index.md"
KINDS = {FIRST_HAND: "in its own paper", SECOND_HAND: "reported by a later paper", RERUN: "re-run here"}


def board_uri(board: Board) -> str:
    return f"leaderboards/{board.slug}.md"


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low or 1.0
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    start = math.floor(low / step) * step
    ticks, t = [], start
    while t <= high + step * 1e-9:
        if t >= low - step * 1e-9:
            ticks.append(round(t, 10))
        t += step
    return ticks


def value_year_svg(board: Board, width: int = 640, height: int = 280) -> str:
    """Scatter plot of each row's value against the year of its method's paper (re-runs at the year they ran):
    filled circles first-hand, hollow circles second-hand, diamonds re-run here. Plain SVG with a title per point."""
    rows = [r for r in board.rows]
    if not rows:
        return ""
    left, right, top, bottom = 56, 16, 16, 40
    years = [r.year for r in rows]
    values = [r.value for r in rows]
    y0, y1 = min(years) - 0.5, max(years) + 0.5
    v0, v1 = min(values), max(values)
    pad = (v1 - v0) * 0.08 or max(abs(v0) * 0.05, 0.5)
    v0, v1 = v0 - pad, v1 + pad
    if board.benchmark.minimum is not None:
        v0 = max(v0, board.benchmark.minimum)
    if board.benchmark.maximum is not None:
        v1 = min(v1, board.benchmark.maximum)
    if v1 <= v0:
        v1 = v0 + 1

    def x(year: float) -> float:
        return left + (year - y0) / (y1 - y0) * (width - left - right)

    def y(value: float) -> float:
        return top + (v1 - value) / (v1 - v0) * (height - top - bottom)

    unit = board.benchmark.unit or ""
    arrow = "higher is better" if board.benchmark.higher_is_better else "lower is better"
    parts = [f'<svg class="mla-lb-plot" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="{html.escape(board.title)}: {html.escape(board.benchmark.metric)} against year">',
             f'<title>{html.escape(board.benchmark.metric)} ({arrow}) against year</title>']
    for tick in _nice_ticks(v0, v1):
        ty = y(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" class="mla-lb-grid"/>')
        parts.append(f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end" class="mla-lb-tick">{number(tick)}</text>')
    for year in range(min(years), max(years) + 1):
        parts.append(f'<text x="{x(year):.1f}" y="{height - bottom + 18}" text-anchor="middle" class="mla-lb-tick">{year}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}" class="mla-lb-axis">year of the paper (re-runs: year run)</text>')
    parts.append(f'<text x="12" y="{top + 8}" class="mla-lb-axis">{html.escape(board.benchmark.metric)}'
                 f'{" (" + html.escape(unit) + ")" if unit else ""}</text>')
    counts: dict[tuple[int, float], int] = {}
    for r in rows:
        key = (r.year, round(r.value, 6))
        jitter = counts.get(key, 0)
        counts[key] = jitter + 1
        cx, cy = x(r.year) + (jitter % 5 - 2) * 4, y(r.value)
        label = html.escape(f"{r.method} — {number(r.value)}{' ' + unit if unit else ''} ({KINDS[r.kind]}; "
                            f"{r.source_label or r.reproduction or ''} {r.table or ''})".replace(" )", ")"))
        if r.kind == RERUN:
            d = 5
            parts.append(f'<path d="M{cx:.1f} {cy - d:.1f} L{cx + d:.1f} {cy:.1f} L{cx:.1f} {cy + d:.1f} L{cx - d:.1f} {cy:.1f} Z" '
                         f'class="mla-lb-pt mla-lb-pt--rerun" data-variant="{r.variant}"><title>{label}</title></path>')
        else:
            kind = "first" if r.kind == FIRST_HAND else "second"
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" class="mla-lb-pt mla-lb-pt--{kind}" '
                         f'data-variant="{r.variant}"><title>{label}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def leaderboard_pages(site: SiteContent) -> list[GeneratedPage]:
    boards = build_leaderboards(site.catalog)
    if not boards:
        return []
    meta = front_matter("Leaderboards", hide=["navigation", "toc"])
    pages = [site._render(INDEX_URI, "leaderboards.md.j2", meta=meta, boards=boards, board_uri=board_uri)]
    for board in boards:
        meta = front_matter(f"Leaderboard: {board.title}", hide=["navigation"])
        pages.append(site._render(board_uri(board), "leaderboard.md.j2", meta=meta, board=board, kinds=KINDS,
                                  plot=value_year_svg(board), index_uri=INDEX_URI))
    return pages
