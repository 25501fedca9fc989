"""What a new visitor sees (issue 24), checked in Chromium as a person would: what is visible, where it sits,
whether anything runs off the side, how tall the pages are at 1400x1000 and at 400 px wide.

The site is built once from the real catalog and records plus the fixture paper of ``test_site_browser`` (its
fixtures are reused). ``python tests/test_site_ux_browser.py`` prints the heights and widths of the MAML,
MetaInit and explorer pages at both window sizes.
"""

from __future__ import annotations

import io
import re
import sys
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from mlatlas.cli import main as mlatlas_main
from mlatlas.outputs.source_lists import SOURCE_LISTS
from mlatlas.records import VERDICTS, summary, verdict
from test_site_browser import (  # noqa: F401  (fixtures)
    CHROMIUM, CHROMIUM_ARGS, FIXTURE_ID, PROJECT_ROOT, atlas_root, browser, built, catalog, server,
)

pytestmark = pytest.mark.browser

WIDE = {"width": 1400, "height": 1000}
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 400, "height": 900}
SITE_NAME = "Meta-Learning Atlas"


def open_page(browser, viewport: dict):
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(120_000)  # a loaded shared machine can take a minute to lay out the explorer
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


@pytest.fixture(params=[WIDE, PHONE], ids=["1400x1000", "400px"])
def any_page(request, browser):
    context, page, errors = open_page(browser, request.param)
    yield page
    context.close()
    assert not errors, errors


@pytest.fixture
def wide(browser):
    context, page, errors = open_page(browser, WIDE)
    yield page
    context.close()
    assert not errors, errors


LAYOUT = """() => {
  const d = document.documentElement;
  const inner = document.querySelector('.md-content__inner');
  return {height: d.scrollHeight, scrollWidth: d.scrollWidth, clientWidth: d.clientWidth,
          innerRight: inner ? inner.getBoundingClientRect().right : null};
}"""


def layout(page) -> dict:
    return page.evaluate(LAYOUT)


def records_of(catalog, paper_id: str):
    return [record for _, record in catalog.records if record.paper == paper_id]


def visible_rows(page) -> list[str]:
    """Ids of the explorer rows a person sees (laid out, with a size), in screen order."""
    return page.evaluate("""() => [...document.querySelectorAll('#mla-explorer tbody tr')]
        .filter(r => r.getBoundingClientRect().height > 0)
        .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
        .map(r => r.dataset.id)""")


def seen(locator) -> bool:
    """Visible with a real size (not only present in the DOM)."""
    box = locator.bounding_box()
    return locator.is_visible() and box is not None and box["width"] > 0 and box["height"] > 0


# ------------------------------------------------------------------------------------ 1. reproduced papers' pages


def test_maml_page_opens_with_the_papers_facts_and_its_reproduction_summary(any_page, server, catalog):
    page = any_page
    page.goto(server + "papers/maml/")
    facts, box = page.locator(".mla-facts"), page.locator("#reproduction-summary")
    for part in (facts, box):
        assert seen(part)
        bottom = part.bounding_box()["y"] + part.bounding_box()["height"]
        assert bottom <= page.viewport_size["height"], f"below the first screen: {bottom}"
    records = records_of(catalog, "maml")
    counts = Counter(verdict(r).kind for r in records)
    text = box.inner_text()
    assert f"{len(records)} results" in text
    for kind in VERDICTS:
        assert (f"{counts[kind]} {kind}" in text) == bool(counts[kind]), kind
    assert summary(records) in text
    assert "ICML 2017" in facts.inner_text() and "official" in facts.inner_text()


def test_records_are_one_table_of_closed_rows_with_distinct_labels_that_open(wide, server, catalog):
    page = wide
    page.goto(server + "papers/maml/")
    records = records_of(catalog, "maml")
    rows = page.locator("details.mla-rec")
    assert rows.count() == len(records) and page.locator(".mla-records").count() == 1
    assert page.locator("details.mla-rec[open]").count() == 0
    labels = page.locator(".mla-rec__label").all_inner_texts()
    assert len(set(labels)) == len(labels), "two rows read the same"
    heights = page.evaluate("() => [...document.querySelectorAll('summary.mla-rec__row')].map(s => s.getBoundingClientRect().height)")
    assert max(heights) < 60, max(heights)  # compact: at most two lines of text
    first = rows.first
    body = first.locator(".mla-rec__body")
    assert not body.is_visible()
    first.locator("summary").click()
    assert seen(body)
    text = body.inner_text()
    assert "Command" in text and "Commit" in text and "Hardware" in text
    img = body.locator(".mla-plot img")
    assert seen(img) and img.evaluate("i => i.decode().then(() => i.naturalWidth)") > 0


@pytest.mark.parametrize("paper_id", ["maml", "metainit", FIXTURE_ID])
def test_paper_pages_never_run_off_the_side(any_page, server, paper_id):
    page = any_page
    page.goto(server + f"papers/{paper_id}/")
    found = layout(page)
    assert found["scrollWidth"] <= found["clientWidth"], found
    table = page.locator(".mla-records")
    assert table.evaluate("t => t.scrollWidth <= t.clientWidth")
    right = table.bounding_box()["x"] + table.bounding_box()["width"]
    assert right <= found["clientWidth"]
    overflowing = page.evaluate("""() => [...document.querySelectorAll('.mla-records summary > *, .mla-records__head')]
        .filter(e => e.getBoundingClientRect().right > e.closest('.mla-records').getBoundingClientRect().right + 1)
        .length""")
    assert overflowing == 0
    page.locator("details.mla-rec summary").first.click()  # an open row fits too (long commands wrap)
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")


@pytest.mark.parametrize("url", ["", "papers/", "reproductions/", "corrections/", "benchmarks/"])
def test_no_page_runs_off_the_side_of_the_window(any_page, server, url):
    """Wide tables scroll inside their own box; the page itself never scrolls sideways."""
    page = any_page
    page.goto(server + url)
    found = layout(page)
    assert found["scrollWidth"] <= found["clientWidth"], found


def test_maml_page_is_under_8000_px_with_every_row_closed(browser, server):
    for viewport in (WIDE, DESKTOP):
        context, page, _ = open_page(browser, viewport)
        page.goto(server + "papers/maml/")
        assert page.locator("details.mla-rec[open]").count() == 0
        assert layout(page)["height"] < 8000, (viewport, layout(page))
        context.close()


def test_on_a_phone_a_closed_row_is_a_few_lines(browser, server):
    """At 400 px the values move under the row's name (each after its column's name): at most four lines a row."""
    context, page, _ = open_page(browser, PHONE)
    page.goto(server + "papers/maml/")
    assert not page.locator(".mla-records__head").is_visible()
    rows = page.evaluate("""() => [...document.querySelectorAll('summary.mla-rec__row')].map(s => {
        const css = getComputedStyle(s);
        const text = s.getBoundingClientRect().height - parseFloat(css.paddingTop) - parseFloat(css.paddingBottom);
        return text / parseFloat(css.lineHeight); })""")
    assert rows and max(rows) <= 4.2, max(rows)
    ours = page.locator(".mla-rec__ours").first
    assert seen(ours) and ours.evaluate("e => getComputedStyle(e, '::before').content") == '"Ours"'
    context.close()


def test_a_link_to_a_record_opens_its_row(wide, server):
    page = wide
    page.goto(server + "reproductions/")
    link = page.locator(f"a[href*='papers/{FIXTURE_ID}/#record-']").first
    link.click()
    page.wait_for_load_state()
    row = page.locator("details.mla-rec[open]")
    assert row.count() == 1
    assert seen(row.locator(".mla-rec__body"))
    top = row.bounding_box()["y"]
    assert 0 <= top < WIDE["height"]  # scrolled to it


# ------------------------------------------------------------------------------------ 3. explorer


def test_show_more_is_hidden_when_there_is_nothing_more(any_page, server, catalog):
    page = any_page
    page.goto(server + "papers/")
    more = page.locator("[data-more]")
    assert len(catalog.papers) <= 250 and not seen(more)
    page.fill("input[data-text]", "zzzz-no-such-paper")
    assert visible_rows(page) == []
    assert seen(page.locator("[data-empty]")) and not seen(more)


def test_show_more_shows_more_and_goes_away_at_the_end(wide, server, catalog):
    page = wide
    total = len(catalog.papers)
    size = 40

    def smaller_pages(route):
        reply = route.fetch()
        route.fulfill(response=reply, body=re.sub(r'data-page-size="\d+"', f'data-page-size="{size}"', reply.text()))

    page.route("**/papers/", smaller_pages)
    page.goto(server + "papers/")
    more = page.locator("[data-more]")
    assert len(visible_rows(page)) == size and seen(more)
    shown = size
    while shown < total:
        more.click()
        shown = min(shown + size, total)
        assert len(visible_rows(page)) == shown
    assert not seen(more)


def test_columns_sort_by_value_from_anywhere_in_the_header(wide, server, catalog):
    page = wide
    page.goto(server + "papers/")
    header = page.locator("th:has(button[data-sort='venue'])")
    box = header.bounding_box()
    page.mouse.click(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2)  # the cell's corner, not its text
    assert header.get_attribute("aria-sort") == "ascending"
    venues = [catalog.papers[i].venue_name for i in visible_rows(page)]
    assert venues == sorted(venues, key=str.casefold)
    page.mouse.click(box["x"] + 2, box["y"] + 2)
    assert header.get_attribute("aria-sort") == "descending"
    assert [catalog.papers[i].venue_name for i in visible_rows(page)] == sorted(venues, key=str.casefold, reverse=True)

    page.click("button[data-sort='code']")
    order = ["official", "community", "none"]
    codes = [catalog.papers[i].code.status for i in visible_rows(page)]
    assert codes == sorted(codes, key=order.index)
    page.click("button[data-sort='reproduced']")
    states = page.evaluate("() => [...document.querySelectorAll('#mla-explorer tbody tr:not([hidden])')].map(r => r.dataset.reproduced)")
    rank = ["reproduced", "in-progress", "needed", "not-needed"]
    assert states == sorted(states, key=rank.index)


def test_search_knows_every_alias_in_the_catalog(wide, server, catalog):
    page = wide
    page.goto(server + "papers/")
    page.fill("input[data-text]", "protonet")
    assert visible_rows(page) == ["prototypical-networks"]
    page.fill("input[data-text]", "metasgd")  # spelling without the hyphen finds Meta-SGD
    assert visible_rows(page) == ["meta-sgd"]
    aliased = {pid: p.aliases for pid, p in catalog.papers.items() if p.aliases}
    assert len(aliased) >= 5
    for pid, aliases in aliased.items():
        for alias in aliases:
            page.fill("input[data-text]", alias.upper())
            assert pid in visible_rows(page), alias


# ------------------------------------------------------------------------------------ 5. wording and facts


def test_home_says_what_reproductions_are_for_and_counts_what_repro_list_lists(wide, server, catalog):
    page = wide
    page.goto(server)
    assert page.title() == SITE_NAME  # the tab does not repeat the site name
    lead = page.locator(".mla-lead").first
    assert seen(lead)
    assert "is the code" in lead.inner_text() and "checks the published numbers" in lead.inner_text()
    shown = int(page.locator("[data-stat='reproductions']").inner_text())
    assert shown == len({name for p in catalog.papers.values() for name in p.reproductions})
    assert shown == len(repro_list_names()) + 1  # the test catalog adds the fixture's reproduction


def repro_list_names() -> list[str]:
    """The reproductions `mlatlas repro list` prints (one unindented line each)."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert mlatlas_main(["repro", "list"]) == 0
    return [line.split()[0] for line in out.getvalue().splitlines() if line and not line.startswith(" ")]


def test_the_real_catalog_names_exactly_the_reproductions_repro_list_shows():
    from mlatlas.catalog.loader import load_valid_catalog

    real = load_valid_catalog(PROJECT_ROOT)
    assert sorted(repro_list_names()) == sorted({n for p in real.papers.values() for n in p.reproductions})


def test_reproductions_page_explains_both_kinds(wide, server, catalog):
    page = wide
    page.goto(server + "reproductions/")
    kinds = page.locator(".mla-kind")
    assert kinds.count() == 2 and all(seen(kinds.nth(i)) for i in range(2))
    assert "is the code" in kinds.nth(0).inner_text() and "checks the published numbers" in kinds.nth(1).inner_text()
    with_code = page.locator("h2:has-text('Papers with official code') + * a[href*='papers/']").all_inner_texts()
    assert "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks" in with_code
    title = page.title()
    assert title.count(SITE_NAME) == 1


def test_corrections_page_names_and_links_its_source_lists(wide, server, catalog):
    page = wide
    page.goto(server + "corrections/")
    used = {c.source for p in catalog.papers.values() for c in p.corrections}
    assert used <= set(SOURCE_LISTS), used - set(SOURCE_LISTS)
    for key in used:
        lst = SOURCE_LISTS[key]
        item = page.locator(f"#source-{key.replace(' ', '-')}")
        assert seen(item) and lst.title in item.inner_text()
        if lst.url:
            assert item.locator(f"a[href='{lst.url}']").count() == 1
    cells = page.locator("td.mla-col-source").all_inner_texts()
    assert cells and not any(re.fullmatch(r"seed \d+", c.strip()) for c in cells)


def test_year_only_dates_print_as_the_year(wide, server, catalog):
    paper = next(p for p in catalog.papers.values() if p.date_precision == "year")
    page = wide
    page.goto(server + f"papers/{paper.id}/")
    facts = page.locator(".mla-facts").inner_text()
    assert f"First public version {paper.year}" in " ".join(facts.split())
    assert paper.date.isoformat() not in page.locator(".md-content").inner_text()


def test_speed_page_is_named_for_what_it_measures(wide, server):
    page = wide
    page.goto(server)
    tab = page.locator(".md-tabs__link", has_text="Speed of our code")
    assert seen(tab) and page.locator(".md-tabs__link", has_text=re.compile(r"^\s*Benchmarks\s*$")).count() == 0
    tab.click()
    page.wait_for_load_state()
    assert "Speed of our code" in page.locator("h1").first.inner_text()
    assert page.title() == f"Speed of our code - {SITE_NAME}"


def test_no_tab_title_repeats_the_site_name(built):
    repeated = [str(p.relative_to(built)) for p in built.rglob("*.html")
                if re.search(r"<title>[^<]*" + SITE_NAME + r"[^<]*" + SITE_NAME, p.read_text(encoding="utf-8"))]
    assert not repeated, repeated


# ------------------------------------------------------------------------------------ measurements for the report


def measure(built_dir: Path) -> list[tuple[str, str, dict]]:
    """Height and widths of the MAML, MetaInit and explorer pages at 1400x1000 and at 400 px wide."""
    import functools
    import threading
    from http.server import ThreadingHTTPServer

    from playwright.sync_api import sync_playwright
    from test_site_browser import _QuietHandler

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(built_dir)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}/"
    found = []
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for name, viewport in (("1400x1000", WIDE), ("400x900", PHONE)):
            context = chromium.new_context(viewport=viewport)
            context.set_default_timeout(300_000)
            page = context.new_page()
            for url in ("papers/maml/", "papers/metainit/", "papers/"):
                page.goto(base + url)
                found.append((name, url, layout(page)))
            context.close()
        chromium.close()
    httpd.shutdown()
    return found


if __name__ == "__main__":  # python tests/test_site_ux_browser.py site_build
    for size, url, numbers in measure(Path(sys.argv[1] if len(sys.argv) > 1 else "site_build")):
        print(f"{size:10} {url:18} height {numbers['height']:6} px, document width {numbers['scrollWidth']} px "
              f"in a {numbers['clientWidth']} px window")
