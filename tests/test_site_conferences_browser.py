"""In a real browser, on the site built from the real catalog: the home page leads to the index of conferences,
and from there to the ICLR 2023 page, which lists that conference's papers and links to their pages."""

from __future__ import annotations

import functools
import threading
from http.server import ThreadingHTTPServer

import pytest

from mlatlas.catalog.loader import load_valid_catalog
from test_site_browser import CHROMIUM, CHROMIUM_ARGS, _QuietHandler, build_site, copy_checkout

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def atlas_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas")
    copy_checkout(root)
    return root


@pytest.fixture(scope="module")
def server(atlas_root, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (CI installs it)")
    out = tmp_path_factory.mktemp("site") / "site"
    result = build_site(atlas_root, out)
    assert result.returncode == 0, result.stderr
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(out)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert not errors, errors


def test_home_page_leads_to_each_conference_and_its_papers(page, server, atlas_root):
    catalog = load_valid_catalog(atlas_root)
    iclr23 = sorted(p.title for p in catalog.papers.values() if p.venue == "ICLR 2023")
    assert iclr23, "the catalog has no ICLR 2023 paper"

    page.goto(server)
    page.click("a[data-conferences-index]")
    page.wait_for_url("**/conferences/")
    assert page.locator("h1").first.inner_text() == "Conferences"

    page.click("a[data-edition='ICLR 2023']")
    page.wait_for_url("**/conferences/iclr-2023/")
    assert page.locator("h1").first.inner_text() == "ICLR 2023"
    titles = page.eval_on_selector_all(".mla-table tbody tr a[href*='papers/']", "as => as.map(a => a.innerText)")
    listed = sorted({" ".join(t.split()) for t in titles} & {" ".join(t.split()) for t in iclr23})
    assert listed == sorted(" ".join(t.split()) for t in iclr23)

    page.locator(".mla-table tbody tr").get_by_role("link", name=iclr23[0], exact=True).first.click()
    page.wait_for_url("**/papers/**")
    assert " ".join(page.locator("h1").first.inner_text().split()) == " ".join(iclr23[0].split())
