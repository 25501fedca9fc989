"""Jinja2 environment for the site templates (``tools/templates/site``).

Autoescaping is on for every template: catalog strings only ever reach a page through an HTML
element (Markdown does not touch raw HTML blocks), so a title holding ``<script>`` or ``*stars*``
shows as text. Page front matter is written with :func:`front_matter`, which escapes the title too,
because the theme prints ``page.meta.title`` unescaped.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "site"


def number(value: float | None, digits: int = 2) -> str:
    """A result value as the paper would print it: no trailing zeros beyond what was given."""
    if value is None:
        return ""
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def signed(value: float, digits: int = 2) -> str:
    return ("+" if value > 0 else "−" if value < 0 else "±") + number(abs(value), digits)


def front_matter(title: str, **meta) -> str:
    """YAML front matter for a generated page; the title is HTML-escaped (the theme prints it raw)."""
    data = {"title": html.escape(title, quote=False), **{k: v for k, v in meta.items() if v is not None}}
    return "---\n" + yaml.safe_dump(data, allow_unicode=True, sort_keys=False) + "---\n\n"


def short_authors(authors: list[str]) -> str:
    """'A', 'A and B', or 'A et al.' for table cells."""
    if len(authors) == 1:
        return authors[0]
    if len(authors) == 2:
        return f"{authors[0]} and {authors[1]}"
    return f"{authors[0]} et al."


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
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
