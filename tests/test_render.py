"""README rendering: blocks, staleness, atomic writes, and escaping that no string can break."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from conftest import FIXTURE_CATALOG
from mlatlas.outputs.bibtex import paper_bibtex
from mlatlas.cli import main
from mlatlas.catalog.loader import load_valid_catalog
from mlatlas.outputs.mdescape import md_text, visible_text
from mlatlas.outputs.readme import BEGIN, END, RenderError, render_blocks, splice, stale_blocks

MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])

# Strings that have broken Markdown tables or injected markup somewhere, mixed into random text.
NASTY = [
    "|", "\\|", "\n", "\r\n", "\t", "<script>alert(1)</script>", "[x](javascript:alert(1))", "![i](https://e.example/x.png)",
    "`", "``", "**", "_", "~~", "\\", "&#124;", "&amp;", "&", "<br>", "<!--", "-->", "https://evil.example/x",
    "www.evil.example", "a@b.example", "$x$", "{: .cls}", "|---|", "# h", "- item", "1. one", "[^1]", "<", ">",
    "\u200b", "\u202e", "\x00", "\x1b[31m", "\u2028", END.format(name="papers"), BEGIN.format(name="labels"),
]
nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), min_size=1, max_size=12).map("".join)


@pytest.fixture(scope="module")
def fixture_catalog():
    return load_valid_catalog(FIXTURE_CATALOG)


def table_rows(markdown: str) -> list[list]:
    """Body rows of every table in ``markdown``, each a list of its cells' inline tokens."""
    rows, row, in_body = [], None, False
    for token in MD.parse(markdown):
        if token.type == "tbody_open":
            in_body = True
        elif token.type == "tbody_close":
            in_body = False
        elif in_body and token.type == "tr_open":
            row = []
        elif in_body and token.type == "tr_close":
            rows.append(row)
        elif in_body and token.type == "inline":
            row.append(token.children or [])
    return rows


def text_of(children) -> str:
    return "".join(c.content if c.type != "softbreak" else " " for c in children if c.type in ("text", "softbreak"))


def split_at_br(children):
    index = next(i for i, c in enumerate(children) if c.type == "html_inline" and c.content == "<br>")
    return children[:index], children[index + 1 :]


def assert_no_foreign_markup(markdown: str) -> None:
    for token in MD.parse(markdown):
        assert token.type != "html_block", token
        for child in token.children or []:
            assert child.type != "html_inline" or child.content == "<br>", child
            assert child.type not in ("code_inline", "s_open", "em_open"), child


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=nasty_text, summary=nasty_text, method=nasty_text, venue=nasty_text, label=nasty_text)
def test_rendering_never_breaks_a_table(fixture_catalog, title, summary, method, venue, label):
    catalog = fixture_catalog
    alpha = catalog.papers["alpha"]
    original_label = catalog.labels.families[1].labels[0].name
    catalog.labels.families[1].labels[0].name = label  # vocabulary text is escaped too
    try:
        catalog.papers["alpha"] = alpha.model_copy(update={"title": title, "summary": summary, "method": method, "venue": venue})
        blocks = render_blocks(catalog)
    finally:
        catalog.papers["alpha"] = alpha
        catalog.labels.families[1].labels[0].name = original_label
    papers = blocks["papers"]
    rows = table_rows(papers)
    # alpha is in one topic, beta in two: three rows, six cells each, whatever the strings hold.
    assert len(rows) == 3 and all(len(r) == 6 for r in rows)
    assert_no_foreign_markup(papers)
    assert_no_foreign_markup(blocks["labels"])
    alpha_row = rows[1]  # survey table (beta) first, then few-shot: alpha (2017) before beta (2019)
    before, after = split_at_br(alpha_row[4])
    assert text_of(before) == visible_text(title)
    assert text_of(after) == visible_text(summary)
    assert text_of(alpha_row[1]) == (visible_text(method) or "—")
    assert text_of(alpha_row[3]) == visible_text(venue)
    links = [c.attrs["href"] for c in before if c.type == "link_open"]
    assert links == ["https://arxiv.org/abs/1703.00001"]
    images = [c for c in alpha_row[2] if c.type == "image"]
    assert len(images) == 3 and text_of(images[1].children or []) == visible_text(label)
    # The block can be put into a README and found again intact.
    text = splice(f"{BEGIN.format(name='papers')}\n{END.format(name='papers')}\n", {"papers": papers})
    assert stale_blocks(text, {"papers": papers}) == []


@settings(max_examples=80, deadline=None)
@given(suffix=st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")), max_size=30))
def test_odd_urls_stay_inside_their_link(fixture_catalog, suffix):
    catalog = fixture_catalog
    alpha = catalog.papers["alpha"]
    repo = alpha.code.repositories[0].model_copy(update={"url": f"https://example.org/{suffix}"})
    code = alpha.code.model_copy(update={"repositories": [repo]})
    catalog.papers["alpha"] = alpha.model_copy(update={"code": code})
    try:
        rows = table_rows(render_blocks(catalog)["papers"])
    finally:
        catalog.papers["alpha"] = alpha
    assert len(rows) == 3 and all(len(r) == 6 for r in rows)
    code_cell = rows[1][5]
    assert [c.type for c in code_cell] == ["link_open", "text", "link_close"]
    assert text_of(code_cell) == "official"


@settings(max_examples=60, deadline=None)
@given(title=nasty_text, author=nasty_text)
def test_bibtex_braces_always_balance(fixture_catalog, title, author):
    paper = fixture_catalog.papers["alpha"].model_copy(update={"title": title, "authors": [author]})
    entry = paper_bibtex(paper, fixture_catalog)
    depth = 0
    body = entry.replace("\\{", "").replace("\\}", "")
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0 and entry.count("\n  title = ") == 1


def test_md_text_examples():
    assert md_text("a | b") == "a &#124; b"
    assert md_text("<script>") == "&#60;script&#62;"
    assert md_text("x\n\ny") == "x y"
    assert md_text("see https://a.example") == "see https&#58;//a.example"


def test_render_keeps_prose_and_is_idempotent(tree, capsys):
    assert main(["--root", str(tree.root), "render"]) == 0
    text = tree.read("README.md")
    assert text.startswith("# Fixture atlas\n\nHand-written prose that rendering must keep.\n")
    assert "More prose between the blocks." in text and text.endswith("Closing prose.\n")
    assert "| Date | Method | Labels | Venue | Paper | Code |" in text
    assert "[atlas](reproductions/toy_repro/)" in text and "[official](https://github.com/example/alpha)" in text
    assert "![ML](https://img.shields.io/badge/-ML-6c757d)" in text
    assert (tree.root / "catalog/schema/paper.schema.json").exists()
    assert main(["--root", str(tree.root), "render", "--check"]) == 0
    assert main(["--root", str(tree.root), "render"]) == 0
    assert tree.read("README.md") == text
    assert "already up to date" in capsys.readouterr().out


def test_render_check_names_the_stale_block(tree, capsys):
    assert main(["--root", str(tree.root), "render"]) == 0
    tree.edit("catalog/papers/alpha.yaml", "method: Alpha", "method: Alpha2")
    capsys.readouterr()
    assert main(["--root", str(tree.root), "render", "--check"]) == 1
    err = capsys.readouterr().err
    assert "README.md: generated block 'papers' is stale" in err
    assert "'labels'" not in err


def test_render_check_notices_a_stale_schema(tree, capsys):
    assert main(["--root", str(tree.root), "render"]) == 0
    tree.edit("catalog/schema/paper.schema.json", '"title"', '"titel"')
    assert main(["--root", str(tree.root), "render", "--check"]) == 1
    assert "catalog/schema/paper.schema.json: stale JSON Schema" in capsys.readouterr().err


def test_missing_markers_are_an_error_and_nothing_is_written(tree, capsys):
    tree.write("README.md", "# No blocks here\n")
    assert main(["--root", str(tree.root), "render"]) == 1
    assert "must hold the block 'labels' exactly once (found 0)" in capsys.readouterr().err
    assert tree.read("README.md") == "# No blocks here\n"
    with pytest.raises(RenderError):
        splice("x", {"papers": "y"})


def test_render_leaves_no_temporary_files(tree):
    assert main(["--root", str(tree.root), "render"]) == 0
    assert sorted(p.name for p in tree.root.iterdir() if p.name.startswith(".")) == []


def test_missing_readme_is_a_clear_error(tree, capsys):
    tree.path("README.md").unlink()
    assert main(["--root", str(tree.root), "render"]) == 1
    assert main(["--root", str(tree.root), "render", "--check"]) == 1
    err = capsys.readouterr().err
    assert "error: cannot read" in err and "README.md" in err and "Traceback" not in err


def test_date_column_shows_no_more_than_is_known(tree):
    tree.edit("catalog/papers/alpha.yaml", "date: 2017-03-09", "date: 2017-01-01\ndate_precision: year")
    assert main(["--root", str(tree.root), "render"]) == 0
    rows = [r for r in tree.read("README.md").splitlines() if "Alpha Learning" in r]
    assert rows and all(r.startswith("| 2017 | Alpha |") for r in rows)
    tree.edit("catalog/papers/beta.yaml", "date: 2019-05-01", "date: 2019-05-01\ndate_precision: month")
    assert main(["--root", str(tree.root), "render"]) == 0
    assert "| 2019-05 | — |" in tree.read("README.md")
