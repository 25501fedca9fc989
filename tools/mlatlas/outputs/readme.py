"""Render the catalog into the generated blocks of README.md.

README.md is hand-written prose with blocks between marker comments::

    <!-- BEGIN GENERATED: papers (mlatlas render; do not edit) -->
    ...
    <!-- END GENERATED: papers -->

Only the inside of a block is ever replaced. Every catalog string reaches the templates already
escaped (:mod:`mlatlas.outputs.mdescape`), so the templates only lay cells out.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from mlatlas.catalog.entries import Catalog
from mlatlas.files import write_text_atomic
from mlatlas.outputs.mdescape import md_link, md_text, shields_badge
from mlatlas.catalog.models import Paper

BEGIN = "<!-- BEGIN GENERATED: {name} (mlatlas render; do not edit) -->"
END = "<!-- END GENERATED: {name} -->"
BLOCKS = ("labels", "papers")

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates" / "readme"),
    autoescape=False,  # Markdown, not HTML: values are escaped by mdescape before they get here
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


class RenderError(Exception):
    """README.md cannot be updated (e.g. a block's markers are missing)."""


def primary_url(paper: Paper) -> str | None:
    """The page a paper's title links to: arXiv, then DOI, proceedings, OpenReview, PDF."""
    ids = paper.ids
    if ids.arxiv:
        return f"https://arxiv.org/abs/{ids.arxiv}"
    if ids.doi:
        return f"https://doi.org/{ids.doi}"
    if ids.proceedings:
        return ids.proceedings
    if ids.openreview:
        return f"https://openreview.net/forum?id={ids.openreview}"
    return ids.pdf


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _badges(catalog: Catalog) -> dict[tuple[str, str], str]:
    return {
        (fam.id, lab.id): shields_badge(lab.name, lab.color) for fam in catalog.labels.families for lab in fam.labels
    }


def _code_cell(paper: Paper) -> str:
    """Public code (official, else community), then "atlas" for each of our reproductions of the paper: every
    reproduced paper links its reproduction, with or without public code (names are package slugs)."""
    repos = paper.code.repositories
    cells = []
    if paper.code.status == "official":
        cells.append(md_link("official", next(r.url for r in repos if r.official)))
    elif paper.code.status == "community":
        cells.append(md_link("community", repos[0].url))
    several = len(paper.reproductions) > 1
    cells += [md_link(f"atlas: {name}" if several else "atlas", f"reproductions/{name}/") for name in paper.reproductions]
    if not cells and paper.needs_code:
        cells.append("❗ needs code")
    return " ".join(cells) or "—"


def paper_row(paper: Paper, badges: dict[tuple[str, str], str], families: list[str]) -> list[str]:
    """The six escaped cells of a paper's table row."""
    method = md_text(paper.method or "") or "—"
    method += " 🌟" * paper.highlights.sota + " 🎈" * paper.highlights.pick
    labels = " ".join(badges[(fam, lab)] for fam in families for lab in getattr(paper.labels, fam))
    url = primary_url(paper)
    title = md_link(paper.title, url) if url else md_text(paper.title)
    return [
        paper.date.strftime("%Y" if paper.date_precision == "year" else "%Y-%m"),  # never more than is known
        method,
        labels,
        md_text(paper.venue),
        f"**{title}**<br>{md_text(paper.summary)}",
        _code_cell(paper),
    ]


def render_blocks(catalog: Catalog) -> dict[str, str]:
    """Block name -> generated Markdown (without the marker lines)."""
    badges = _badges(catalog)
    families = [fam.id for fam in catalog.labels.families]
    rows: dict[str, list[list[str]]] = {topic.id: [] for topic in catalog.topics.topics}
    for paper in catalog.papers.values():  # one pass, in catalog order (Catalog.papers_in_topic per topic is O(n²))
        row = paper_row(paper, badges, families)
        for topic_id in dict.fromkeys(paper.topics):
            if topic_id in rows:
                rows[topic_id].append(row)
    sections = [
        {
            "name": md_text(topic.name),
            "anchor": github_anchor(topic.name),
            "intro": md_text(topic.intro),
            "rows": rows[topic.id],
        }
        for topic in catalog.topics.topics
    ]
    legend = [
        {"badge": badges[(fam.id, lab.id)], "family": md_text(fam.name), "description": md_text(lab.description)}
        for fam in catalog.labels.families
        for lab in fam.labels
    ]
    return {
        "labels": _ENV.get_template("labels.md.j2").render(rows=legend),
        "papers": _ENV.get_template("papers.md.j2").render(sections=sections, count=len(catalog.papers)),
    }


def _block_pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        re.escape(BEGIN.format(name=name)) + r"\n(?P<body>.*?)" + re.escape(END.format(name=name)), re.DOTALL
    )


def splice(text: str, blocks: dict[str, str]) -> str:
    """``text`` with the inside of each block replaced; RenderError if a block's markers are not there once."""
    for name, body in blocks.items():
        pattern = _block_pattern(name)
        found = len(pattern.findall(text))
        if found != 1:
            raise RenderError(
                f"README.md must hold the block '{name}' exactly once (found {found}): a line "
                f"'{BEGIN.format(name=name)}' and, below it, a line '{END.format(name=name)}'"
            )
        match = pattern.search(text)
        body = body if body.endswith("\n") else body + "\n"
        text = text[: match.start("body")] + body + text[match.end("body") :]
    return text


def stale_blocks(text: str, blocks: dict[str, str]) -> list[str]:
    """Names of the blocks whose content in ``text`` differs from ``blocks`` (RenderError if missing)."""
    updated = splice(text, blocks)
    if updated == text:
        return []
    return [name for name in blocks if splice(text, {name: blocks[name]}) != text]


def readme_path(root: Path) -> Path:
    return root / "README.md"


def _read_readme(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RenderError(f"cannot read {path}: {exc}") from None


def write_readme(catalog: Catalog) -> bool:
    """Rewrite README.md's blocks (atomically); True when anything changed."""
    path = readme_path(catalog.root)
    text = _read_readme(path)
    updated = splice(text, render_blocks(catalog))
    if updated != text:
        write_text_atomic(path, updated)
    return updated != text


def check_readme(catalog: Catalog) -> list[str]:
    """Names of README.md's stale blocks."""
    return stale_blocks(_read_readme(readme_path(catalog.root)), render_blocks(catalog))
