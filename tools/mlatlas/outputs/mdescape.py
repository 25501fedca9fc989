"""Make catalog text safe inside Markdown table cells.

The rule is total rather than clever: every character that Markdown or HTML could read as syntax is
written as a numeric character reference, all whitespace (newlines included) becomes single spaces and
control characters are dropped. What is left is letters, digits, spaces and harmless punctuation, so a
title can never end a cell, open a link, start emphasis or inject HTML, whatever it holds. References
render as the original characters on GitHub and in MkDocs alike.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

# Characters that can start inline syntax (emphasis, code, links, images, HTML, autolinks, strike-through,
# math, attribute lists) or end a table cell. "(" and ")" stay: without a "[...]" before them they are text.
_WWW = re.compile(r"(?i)(www)\.")
_REFERENCES = {ch: f"&#{ord(ch)};" for ch in "\\`*_[]<>!|~&@{}$"}


def visible_text(text: str) -> str:
    """What a reader sees: invisible characters (controls, format marks, unassigned code points)
    removed and every run of whitespace, newlines included, turned into one space."""
    text = str(text)
    if not text.isprintable():  # rare: only then look at each character
        text = "".join(ch if ch.isspace() or unicodedata.category(ch)[0] != "C" else "" for ch in text)
    return " ".join(text.split())


_TABLE = str.maketrans(_REFERENCES)


def md_text(text: str) -> str:
    """Plain text -> inert Markdown inline text on one line that renders as ``visible_text(text)``."""
    out = visible_text(text).translate(_TABLE)
    # GFM turns bare 'https://...' and 'www.' into links; break both so text stays text.
    return _WWW.sub(r"\1&#46;", out.replace("://", "&#58;//"))


# Kept as-is in link targets: unreserved and URL-delimiting characters that Markdown does not mind.
_URL_SAFE = "-._~:/?#@!$+,;=%"


# URLs made only of characters quote() keeps (its always-safe set plus _URL_SAFE and '&') need no quoting.
_NOTHING_TO_QUOTE = re.compile(r"[A-Za-z0-9_.\-~:/?#@!$+,;=%&]*")


def md_url(url: str) -> str:
    """A link target that cannot end the link or the table cell: everything else is percent-encoded,
    and '&' is written as a reference (Markdown decodes it back, so query strings survive)."""
    url = str(url)
    if not _NOTHING_TO_QUOTE.fullmatch(url):
        url = quote(url, safe=_URL_SAFE + "&")
    return url.replace("&", "&amp;")


def md_link(text: str, url: str) -> str:
    return f"[{md_text(text)}]({md_url(url)})"


def shields_badge(label: str, color: str) -> str:
    """Markdown image of a shields.io static badge showing ``label`` in ``color`` (#rrggbb)."""
    # shields.io reads '-' and '_' as separators; doubling them means the literal characters.
    content = str(label).replace("-", "--").replace("_", "__")
    url = f"https://img.shields.io/badge/-{quote(content, safe='')}-{str(color).lstrip('#')}"
    return f"![{md_text(label)}]({md_url(url)})"
