"""The website, built once from the real catalog plus one hostile fixture paper with a reproduction
record, served by a real HTTP server on 127.0.0.1 and driven in Debian's Chromium through Playwright."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml
from PIL import Image

from mlatlas.catalog.loader import load_valid_catalog

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
FIXTURE_ID = "zz-site-fixture"
FIXTURE_TITLE = "<script>window.__pwned = 1</script> *Starred* [Linked](https://example.org) _Meta_ <b>Learning</b>"
SUMMARY_WORD = "quokkafication"  # appears only in the fixture paper's summary
FIXTURE_LABELS = {"framework": ["meta-learning"], "type": ["metric-based"], "modality": ["text"]}


def _fixture_paper() -> dict:
    return {
        "id": FIXTURE_ID,
        "title": FIXTURE_TITLE,
        "method": "FixtureNet",
        "authors": ["Ada Fixture", "Bob <i>Tester</i>"],
        "date": "2026-01-05",
        "year": 2026,
        "venue": "arXiv 2026",
        "labels": FIXTURE_LABELS,
        "topics": ["few-shot-learning"],
        "code": {"status": "none"},
        "needs_code": True,
        "reproductions": ["site_fixture"],
        "summary": f"A test entry for the website: its summary holds the word {SUMMARY_WORD}, "
        "which no other entry uses, so the site search must find this page by it.",
        "added": "2026-11-22",
    }


def _fixture_record() -> dict:
    return {
        "paper": FIXTURE_ID,
        "reproduction": "site_fixture",
        "benchmark": "Omniglot",
        "setting": "5-way 1-shot",
        "metric": "accuracy",
        "unit": "%",
        "higher_is_better": True,
        "value": 95.25,
        "ci95": 0.4,
        "protocol": {"data": "Omniglot, 1,200 characters x4 rotations", "test": "5-way 1-shot", "test_episodes": 600},
        "paper_value": {"value": 98.7, "pm": 0.4, "citation": "Fixture et al. 2026", "table": "Table 2",
                        "protocol": {"data": "Omniglot, 1,200 characters x4 rotations", "test": "5-way 1-shot"}},
        "budget": "2,000 meta-iterations",
        "plot": "omniglot.png",
        "environment": {
            "command": "mlatlas reproduce site_fixture --benchmark omniglot",
            "commit": "abcdef1",
            "hardware": "test machine",
            "device": "cpu",
            "versions": {"python": "3.11", "torch": "2.13.0"},
            "wall_time_s": 90.0,
            "date": "2026-11-22",
        },
    }


def copy_checkout(root: Path) -> None:
    """The real catalog and the reproductions' result records under ``root`` (packages as empty stubs)."""
    shutil.copytree(PROJECT_ROOT / "catalog", root / "catalog")
    for package in (PROJECT_ROOT / "reproductions").glob("*/__init__.py"):
        target = root / "reproductions" / package.parent.name
        results = package.parent / "results"
        shutil.copytree(results, target / "results") if results.is_dir() else target.mkdir(parents=True)
        (target / "__init__.py").write_text("")
    shutil.copytree(PROJECT_ROOT / "benchmarks" / "results", root / "benchmarks" / "results")


@pytest.fixture(scope="module")
def atlas_root(tmp_path_factory) -> Path:
    """The real catalog and records, plus the fixture paper and its reproduction record (with a plot)."""
    root = tmp_path_factory.mktemp("atlas")
    copy_checkout(root)
    paper = root / "catalog" / "papers" / f"{FIXTURE_ID}.yaml"
    header = "# yaml-language-server: $schema=../schema/paper.schema.json\n"
    paper.write_text(header + yaml.safe_dump(_fixture_paper(), allow_unicode=True, sort_keys=False), encoding="utf-8")
    results = root / "reproductions" / "site_fixture" / "results"
    results.mkdir(parents=True)
    (root / "reproductions" / "site_fixture" / "__init__.py").write_text("")
    (results / "omniglot.yaml").write_text(yaml.safe_dump(_fixture_record(), sort_keys=False), encoding="utf-8")
    Image.new("RGB", (64, 32), (200, 40, 40)).save(results / "omniglot.png")
    return root


def build_site(root: Path, out: Path, config: Path = PROJECT_ROOT / "mkdocs.yml") -> subprocess.CompletedProcess:
    env = {**os.environ, "MLATLAS_ROOT": str(root), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def built(atlas_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    result = build_site(atlas_root, out)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return out


@pytest.fixture(scope="module")
def catalog(atlas_root):
    return load_valid_catalog(atlas_root)


# ------------------------------------------------------------------------------------ built files


def test_every_paper_gets_a_page_and_the_downloads_hold_the_catalog(built, catalog):
    for paper_id in catalog.papers:
        assert (built / "papers" / paper_id / "index.html").is_file(), paper_id
    exported = json.loads((built / "downloads" / "catalog.json").read_text(encoding="utf-8"))
    assert [p["id"] for p in exported["papers"]] == list(catalog.papers)
    bib = (built / "downloads" / "meta-learning-atlas.bib").read_text(encoding="utf-8")
    assert bib.count("\n@") + bib.startswith("@") == len(catalog.papers)
    for group in ("topics", "venues", "years"):
        assert (built / group / "index.html").is_file()
    assert (built / "years" / "2026" / "index.html").is_file()
    assert (built / "reproductions" / "site_fixture" / "omniglot.png").is_file()


def test_benchmarks_page_shows_the_recorded_run(built):
    recorded = json.loads((PROJECT_ROOT / "benchmarks" / "results" / "meta_bench.json").read_text())
    page = (built / "benchmarks" / "index.html").read_text(encoding="utf-8")
    assert recorded["commit"] in page
    for config in recorded["configs"]:
        assert config["key"] in page
        higher = next(r for r in config["results"] if r["impl"] == "higher")
        assert f"{higher['time_ratio_to_ours']:.2f}x" in page
    assert "Against our goal" in page  # each of our variants measured against the goal, configuration by configuration
    assert page.count("the goal)") == sum(1 for c in recorded["configs"] for r in c["results"]
                                           if r["impl"] in ("ours", "ours-lean") and r.get("available"))


def test_no_catalog_string_reaches_the_html_unescaped(built):
    for page in built.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "<script>window.__pwned" not in text, page
        assert "<b>Learning</b>" not in text and "<i>Tester</i>" not in text, page


def test_nothing_is_fetched_from_the_network(built):
    """Scripts, styles, fonts and images all come from the built site (the site works offline)."""
    remote = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//', re.I)
    for page in built.rglob("*.html"):
        found = remote.search(page.read_text(encoding="utf-8"))
        assert not found, f"{page.relative_to(built)}: {found.group(0)}"


def test_every_internal_link_and_image_points_at_a_built_file(built):
    """Our templates compute relative links themselves (mkdocs does not check raw HTML), so check them all."""
    broken = []
    for page in built.rglob("*.html"):
        for target in re.findall(r'(?:href|src)="([^"#?]+)', page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target) or target.startswith("//"):
                continue
            base = built if target.startswith("/") else page.parent  # 404.html links from the site root
            path = (base / unquote(target).lstrip("/")).resolve()
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                broken.append(f"{page.relative_to(built)} -> {target}")
    assert not broken, broken[:20]


# ------------------------------------------------------------------------------------ browser

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(built):
    handler = functools.partial(_QuietHandler, directory=str(built))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (CI installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    yield page
    context.close()
    assert not errors, errors


def visible_ids(page) -> list[str]:
    return page.eval_on_selector_all(
        "#mla-explorer tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.id)"
    )


def test_search_finds_a_paper_by_a_word_only_in_its_summary(page, server):
    page.goto(server)
    page.click(".md-search__input")
    # Type only once the worker has loaded search/search_index.json.
    page.wait_for_function(
        "() => document.querySelector('.md-search-result__meta')?.textContent.includes('Type to start')",
        timeout=20000,
    )
    page.keyboard.type(SUMMARY_WORD)
    hit = page.locator(f".md-search-result__item a[href*='papers/{FIXTURE_ID}/']").first
    hit.wait_for(timeout=10000)
    hit.click()
    page.wait_for_url(f"**/papers/{FIXTURE_ID}/**")
    assert page.locator("h1").first.inner_text() == " ".join(FIXTURE_TITLE.split())


def test_two_labels_leave_exactly_the_matching_rows_and_the_url_restores_them(page, server, catalog):
    expected = sorted(
        pid for pid, p in catalog.papers.items()
        if "metric-based" in p.labels.type and "text" in p.labels.modality
    )
    assert FIXTURE_ID in expected
    page.goto(server + "papers/")
    assert len(visible_ids(page)) == len(catalog.papers)
    page.click("button[data-facet='type'][data-value='metric-based']")
    page.click("button[data-facet='modality'][data-value='text']")
    assert sorted(visible_ids(page)) == expected
    count = page.locator("[data-count]").inner_text()
    assert count == f"{len(expected)} of {len(catalog.papers)} papers"
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"type": ["metric-based"], "modality": ["text"]}

    # A fresh page at the shared URL shows the same view.
    shared = page.url
    page.goto(server)
    page.goto(shared)
    assert sorted(visible_ids(page)) == expected
    pressed = page.eval_on_selector_all(
        "button[data-facet][aria-pressed='true']", "bs => bs.map(b => b.dataset.facet + ':' + b.dataset.value)"
    )
    assert sorted(pressed) == ["modality:text", "type:metric-based"]


def test_explorer_works_with_the_keyboard(page, server, catalog):
    page.goto(server + "papers/")
    page.locator("input[data-text]").focus()
    page.keyboard.type("fixturenet")
    assert visible_ids(page) == [FIXTURE_ID]
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    assert len(visible_ids(page)) == len(catalog.papers)
    # Tab from the text box through the four selects to the first label chip, and toggle it with Space.
    for _ in range(5):
        page.keyboard.press("Tab")
    focused = page.evaluate("() => [document.activeElement.dataset.facet, document.activeElement.dataset.value]")
    first_family = catalog.labels.families[0]
    assert focused == [first_family.id, first_family.labels[0].id]
    page.keyboard.press("Space")
    with_label = sorted(pid for pid, p in catalog.papers.items() if first_family.labels[0].id in getattr(p.labels, first_family.id))
    assert sorted(visible_ids(page)) == with_label
    page.keyboard.press("Enter")  # and off again
    assert len(visible_ids(page)) == len(catalog.papers)
    # Sort by year with Enter on the column header: oldest first, then newest first.
    page.locator("button[data-sort='date']").focus()
    page.keyboard.press("Enter")
    assert page.get_attribute("th:has(button[data-sort='date'])", "aria-sort") == "descending"
    assert visible_ids(page)[0] == FIXTURE_ID  # the fixture is the newest paper
    page.keyboard.press("Enter")
    assert page.get_attribute("th:has(button[data-sort='date'])", "aria-sort") == "ascending"
    first_date = page.get_attribute("#mla-explorer tbody tr:not([hidden])", "data-date")
    assert first_date == min(p.date for p in catalog.papers.values()).isoformat()
    assert parse_qs(urlsplit(page.url).query) == {"sort": ["date"]}


def test_paper_page_shows_bibtex_reproduction_and_escaped_text(page, server):
    page.goto(server + f"papers/{FIXTURE_ID}/")
    assert page.locator("h1").first.inner_text() == " ".join(FIXTURE_TITLE.split())
    assert page.evaluate("() => window.__pwned") is None
    assert "Bob <i>Tester</i>" in page.locator(".mla-authors").inner_text()
    bibtex = page.locator(f"#bibtex-{FIXTURE_ID}").inner_text()
    assert bibtex.startswith("@") and "FixtureNet" not in bibtex and "Ada Fixture" in bibtex
    assert page.locator("button[data-copy]").is_visible()
    row = page.locator("details.mla-rec summary").first.inner_text()
    assert "98.7 ± 0.4" in row and "95.25 ± 0.4" in row and "−3.45" in row and "worse" in row
    assert page.locator("details.mla-rec .mla-rec__seeds").first.inner_text().strip() == "1"
    assert "Omniglot: 1 compared with Table 2: 1 worse" in page.locator(".mla-repro-summary").inner_text()
    page.locator("details.mla-rec summary").first.click()
    assert "mlatlas reproduce site_fixture --benchmark omniglot" in page.locator(".mla-rec__body").first.inner_text()
    width = page.eval_on_selector(".mla-plot img", "img => img.decode().then(() => img.naturalWidth)")
    assert width == 64


def test_explorer_lays_out_a_page_of_rows_at_a_time(page, server, catalog):
    """Large catalogs show the first rows and a Show-more button (page size cut to 10 for the test)."""

    def smaller_pages(route):
        reply = route.fetch()
        body = re.sub(r'data-page-size="\d+"', 'data-page-size="10"', reply.text())
        route.fulfill(response=reply, body=body)

    page.route("**/papers/", smaller_pages)
    page.goto(server + "papers/")
    total = len(catalog.papers)
    assert len(visible_ids(page)) == 10
    assert page.locator("[data-count]").inner_text() == f"{total} papers (showing the first 10)"
    page.locator("[data-more]").click()
    assert len(visible_ids(page)) == 20
    assert sum("meta" in p.title.lower() for p in catalog.papers.values()) > 10
    page.fill("input[data-text]", "meta")  # a new filter starts again from the first page
    assert len(visible_ids(page)) == 10
    page.locator("input[data-text]").fill("")
    page.click("button[data-sort='title']")  # sorting orders all rows, not only the ten shown
    titles = page.eval_on_selector_all("#mla-explorer tbody tr:not([hidden])", "rs => rs.map(r => r.dataset.title)")
    assert titles == sorted(p.title.lower() for p in catalog.papers.values())[:10]


def test_reproductions_page_groups_by_verdict_and_puts_methods_on_one_benchmark_side_by_side(page, server):
    page.goto(server + "reproductions/")
    # Within a verdict, one table per benchmark: the sinusoid methods without a paper number sit side by side.
    heading = page.locator("h3#verdict-no-paper-number ~ h4",
                           has_text=re.compile(r"^Sinusoid regression \(Finn et al\. 2017\)$"))
    assert heading.count() == 1
    table = heading.locator("xpath=following-sibling::div[1]//table")
    assert table.get_attribute("data-verdict") == "no paper number"
    methods = set(table.locator("tbody tr td:nth-child(2)").all_inner_texts())
    assert {"maml", "fomaml", "meta_sgd", "anil", "reptile"} <= methods
    # Rows from another protocol say what differs and show no gap column.
    other = page.locator("table[data-verdict='different protocol']")
    assert other.count() > 0 and "Gap" not in other.first.locator("thead").inner_text()
    assert other.locator(".mla-differs", has_text="data: ours Omniglot minimal setting").count() > 0
    # The fixture record sits in the worse group, in its own benchmark's table, linked to its record on the paper page.
    worse = page.locator("h3#verdict-worse")
    assert worse.count() == 1
    fixture = page.locator("h3#verdict-worse ~ h4", has_text=re.compile(r"^Omniglot$"))
    link = fixture.locator("xpath=following-sibling::div[1]//tbody//a").first
    link.click()
    page.wait_for_load_state()
    assert f"papers/{FIXTURE_ID}/" in page.url and "#" in page.url
