"""Jinja2 environment for the site templates (``tools/mlatlas/outputs/templates/site``).

Templates produce Markdown pages whose HTML parts sit in ``{% filter raw_html %}`` blocks. Each
block is replaced by a marker comment and its HTML kept aside (:class:`Rendered`); the hook puts
it back after Markdown has run (``on_page_content``). Markdown then only sees the headings, which
keeps the build fast for thousands of pages (parsing raw HTML is Python-Markdown's slowest path).
Blocks in ``{% filter unindexed_html %}`` go back only after the search plugin has indexed the
page, so search holds titles, authors and summaries, not every table (and indexes 10,000 pages fast).

Autoescaping is on for every template: catalog strings only ever reach a page through an HTML
element (Markdown does not touch raw HTML blocks), so a title holding ``<script>`` or ``*stars*``
shows as text. Page front matter is written with :func:`front_matter`, which escapes the title too,
because the theme prints ``page.meta.title`` unescaped.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from pathlib import Path

import re
from dataclasses import dataclass, field

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context
from markupsafe import Markup

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "site"


def number(value: float | None, digits: int = 4) -> str:
    """A result as recorded, to ``digits`` significant digits (enough not to hide a gap), never in e-notation."""
    if value is None:
        return ""
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"
    text = f"{value:.{digits}g}"
    if "e" in text:  # tiny values: fixed notation with the same significant digits
        text = f"{value:.{digits + 6}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def signed(value: float, digits: int = 4) -> str:
    return ("+" if value > 0 else "−" if value < 0 else "±") + number(abs(value), digits)


# Characters YAML reads as line breaks or marks even inside quotes; JSON leaves them raw.
_YAML_BREAKS = {ord(ch): f"\\u{ord(ch):04x}" for ch in "\x85\u2028\u2029\ufeff"}


def _yaml_safe(json_text: str) -> str:
    return json_text.translate(_YAML_BREAKS)


def front_matter(title: str, **meta) -> str:
    """YAML front matter for a generated page; the title is HTML-escaped (the theme prints it raw).

    Each value is written as JSON, which YAML reads as-is (and is much faster to write than YAML)."""
    data = {"title": html.escape(title, quote=False), **{k: v for k, v in meta.items() if v is not None}}
    lines = [f"{key}: {_yaml_safe(json.dumps(value, ensure_ascii=False))}" for key, value in data.items()]
    return "---\n" + "\n".join(lines) + "\n---\n\n"


def short_authors(authors: list[str]) -> str:
    """'A', 'A and B', or 'A et al.' for table cells."""
    if len(authors) == 1:
        return authors[0]
    if len(authors) == 2:
        return f"{authors[0]} and {authors[1]}"
    return f"{authors[0]} et al."


MARKER = re.compile(r"<!--mla-raw-(\d+)-->")


@dataclass
class Rendered:
    markdown: str  # the page as mkdocs reads it, with markers where HTML blocks go
    blocks: list[tuple[str, bool]] = field(default_factory=list)  # (html, indexed by search)

    def fill(self, html_text: str, indexed: bool) -> str:
        """``html_text`` with the markers of the indexed (or the unindexed) blocks replaced by their HTML."""

        def block(match: re.Match) -> str:
            text, searchable = self.blocks[int(match.group(1))]
            return text if searchable == indexed else match.group(0)

        return MARKER.sub(block, html_text)


def _stash(context, value, indexed: bool) -> Markup:
    blocks: list[tuple[str, bool]] = context["_blocks"]
    blocks.append((str(value), indexed))
    return Markup(f"\n\n<!--mla-raw-{len(blocks) - 1}-->\n\n")


@pass_context
def _raw_html(context, value) -> Markup:
    return _stash(context, value, indexed=True)


@pass_context
def _unindexed_html(context, value) -> Markup:
    return _stash(context, value, indexed=False)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["number"] = number
    env.filters["signed"] = signed
    env.filters["short_authors"] = short_authors
    env.filters["raw_html"] = _raw_html
    env.filters["unindexed_html"] = _unindexed_html
    return env


def render(template: str, **context) -> Rendered:
    blocks: list[tuple[str, bool]] = []
    markdown = environment().get_template(template).render(_blocks=blocks, **context)
    return Rendered(markdown, blocks)
