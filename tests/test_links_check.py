"""`mlatlas links` against a real HTTP(S) server on 127.0.0.1: each kind of answer gets its documented
outcome (dead only on 404/410/a name that does not resolve), and only changed links are checked on a PR."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from _local_http import LocalServer, Reply, self_signed_tls

from mlatlas.cli import main
from mlatlas.contrib.links import CACHE_FILE, LinkCache, LinkChecker, collect_links, links_in_text

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 1.0  # generous enough for a loaded CI machine; /slow answers well after it


def head_refused(handler) -> Reply:
    return Reply(405) if handler.command == "HEAD" else Reply(200, b"ok")


ROUTES = {
    "/ok": Reply(200, b"fine"),
    "/moved": Reply(301, headers={"Location": "/ok"}),
    "/missing": Reply(404, b"not found"),
    "/gone": Reply(410, b"gone"),
    "/slow": Reply(200, delay=2.5),
    "/reset": Reply(reset=True),
    "/flaky": [Reply(503), Reply(503), Reply(200)],  # HEAD 503 -> GET 503, then HEAD 200
    "/down": Reply(503),
    "/busy": [Reply(429, headers={"Retry-After": "1"}), Reply(200)],
    "/forbidden": Reply(403),
    "/head-refused": head_refused,
}


def checker(**overrides) -> LinkChecker:
    options = dict(timeout=TIMEOUT, retries=1, backoff=0.05, per_host=4, workers=8, dns_control="localhost")
    return LinkChecker(**{**options, **overrides})


@pytest.fixture(scope="module")
def results():
    """Every route checked once, concurrently, as `mlatlas links` does."""
    with LocalServer(dict(ROUTES)) as server:
        urls = {path: server.url(path) for path in ROUTES}
        found = checker().check(urls.values())
        hits = dict(server.hits)
    return {path: found[url] for path, url in urls.items()}, hits, urls


@pytest.mark.parametrize(
    "path, status, code, note",
    [
        ("/ok", "ok", 200, ""),
        ("/missing", "dead", 404, "Not Found"),
        ("/gone", "dead", 410, "Gone"),
        ("/slow", "unknown", None, f"timed out after {TIMEOUT:g} s"),
        ("/reset", "unknown", None, "connection failed"),
        ("/flaky", "ok", 200, ""),
        ("/down", "unknown", 503, "server error 503"),
        ("/busy", "ok", 200, ""),
        ("/forbidden", "unknown", 403, "answered 403"),
        ("/head-refused", "ok", 200, ""),
    ],
)
def test_each_answer_gets_its_outcome(results, path, status, code, note):
    found, _, _ = results
    result = found[path]
    assert (result.status, result.code) == (status, code)
    assert note in result.note


def test_redirect_is_ok_and_names_where_it_ends(results):
    found, _, urls = results
    assert found["/moved"].status == "ok"
    assert found["/moved"].final_url == urls["/ok"]
    assert found["/moved"].note == f"redirects to {urls['/ok']}"


def test_reset_is_reported_as_a_reset(results):
    found, _, _ = results
    assert "ConnectionResetError" in found["/reset"].note or "RemoteDisconnected" in found["/reset"].note


def test_transient_failures_are_retried_and_definite_ones_are_not(results):
    _, hits, _ = results
    assert hits["/missing"] == 4  # HEAD said 404, GET agreed; no retry, but a second try confirms the verdict
    assert hits["/flaky"] == 3  # HEAD 503 + GET 503, retry: HEAD 200
    assert hits["/down"] == 4  # (HEAD + GET) x (1 try + 1 retry), then "unknown"
    assert hits["/head-refused"] == 2


def test_429_is_retried_after_the_time_retry_after_asks():
    with LocalServer({"/busy": [Reply(429, headers={"Retry-After": "1"}), Reply(200)]}) as server:
        result = checker().check_one(server.url("/busy"))
        (first, *_), (second, *_) = server.log
    assert result.status == "ok"
    assert second - first >= 1.0


def test_retry_after_beyond_the_limit_gives_up_as_unknown():
    with LocalServer({"/busy": Reply(429, headers={"Retry-After": "3600"})}) as server:
        started = time.monotonic()
        result = checker(max_retry_after=5).check_one(server.url("/busy"))
    assert result.status == "unknown" and "3600" in result.note
    assert time.monotonic() - started < 2


def test_a_name_that_does_not_resolve_is_dead():
    result = checker().check_one("https://no-such-host.invalid/paper")
    assert result.status == "dead"
    assert result.note == "host name no-such-host.invalid does not resolve"


def test_without_working_dns_a_missing_name_is_only_unknown():
    result = checker(dns_control="control-host.invalid").check_one("https://no-such-host.invalid/paper")
    assert result.status == "unknown"


def test_at_most_per_host_requests_run_at_once():
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def counted(handler) -> Reply:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.3)
        with lock:
            state["now"] -= 1
        return Reply(200)

    routes = {f"/p{i}": counted for i in range(8)}
    with LocalServer(routes) as server:
        found = checker(per_host=2, workers=8).check(server.url(p) for p in routes)
    assert all(r.status == "ok" for r in found.values())
    assert state["peak"] == 2


def test_definite_answers_are_cached_and_unknown_ones_are_not(tmp_path):
    cache_path = tmp_path / "links.json"
    routes = {"/ok": Reply(200), "/missing": Reply(404), "/down": Reply(503)}
    with LocalServer(routes) as server:
        urls = [server.url(p) for p in routes]
        checker(retries=0).check(urls, cache=LinkCache(cache_path, ttl=3600))
        first_hits = dict(server.hits)
        again = checker(retries=0).check(urls, cache=LinkCache(cache_path, ttl=3600))
        assert dict(server.hits) == {**first_hits, "/down": first_hits["/down"] * 2}
        expired = checker(retries=0).check(urls, cache=LinkCache(cache_path, ttl=0))
    assert again[server.url("/ok")].cached and again[server.url("/missing")].cached
    assert not again[server.url("/down")].cached
    assert not expired[server.url("/ok")].cached
    assert set(json.loads(cache_path.read_text())) == {server.url("/ok"), server.url("/missing")}


def test_one_transient_404_is_not_a_dead_link():
    # HEAD 404, GET 404 (a dead answer), then the confirming try: HEAD 200
    with LocalServer({"/blip": [Reply(404), Reply(404), Reply(200)]}) as server:
        result = checker(retries=0).check_one(server.url("/blip"))
    assert (result.status, result.code) == ("ok", 200)
    assert "a first try answered 404" in result.note


def test_dead_answers_are_cached_far_shorter_than_ok_ones(tmp_path):
    cache_path = tmp_path / "links.json"
    two_hours_ago = time.time() - 2 * 3600
    cache_path.write_text(json.dumps({
        "https://a.example/ok": {"url": "https://a.example/ok", "status": "ok", "code": 200, "checked_at": two_hours_ago},
        "https://a.example/dead": {"url": "https://a.example/dead", "status": "dead", "code": 404,
                                   "checked_at": two_hours_ago},
        "https://a.example/future": {"url": "https://a.example/future", "status": "ok", "code": 200,
                                     "checked_at": time.time() + 10 * 24 * 3600},
    }))
    cache = LinkCache(cache_path, ttl=24 * 3600)
    assert cache.dead_ttl == 3600
    assert cache.get("https://a.example/ok").cached
    assert cache.get("https://a.example/dead") is None  # two hours: too old for a dead answer
    assert cache.get("https://a.example/future") is None
    assert LinkCache(cache_path, ttl=24 * 3600, dead_ttl=3 * 3600).get("https://a.example/dead").cached


def test_a_broken_cache_file_is_ignored(tmp_path):
    cache_path = tmp_path / "links.json"
    cache_path.write_text("{not json")
    assert LinkCache(cache_path, ttl=3600).entries == {}


def test_paper_links_include_ids_turned_into_urls():
    text = (REPO / "catalog" / "papers" / "maml.yaml").read_text()
    refs = links_in_text("catalog/papers/maml.yaml", text)
    assert ("ids.arxiv", "https://arxiv.org/abs/1703.03400") in {(r.field, r.url) for r in refs}
    assert ("code.repositories.0.url", "https://github.com/cbfinn/maml") in {(r.field, r.url) for r in refs}


# ------------------------------------------------------------------------------------------------
# The command, end to end: HTTPS catalog links, git, table and JSON output, exit status
# ------------------------------------------------------------------------------------------------


def _paper(paper_id: str, urls: list[str]) -> str:
    data = yaml.safe_load((REPO / "catalog" / "papers" / "maml.yaml").read_text())
    data.update(id=paper_id, ids={}, links=[{"label": f"link {i}", "url": u} for i, u in enumerate(urls)])
    data["code"] = {"status": "none"}
    return yaml.safe_dump(data, sort_keys=False)


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=Test", "-c", "user.email=test@example.org", *args],
                   check=True, capture_output=True)


@pytest.fixture
def https_catalog(tmp_path, monkeypatch):
    """A git checkout whose one paper links to a local HTTPS server; the client trusts its certificate."""
    context, cert = self_signed_tls(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("MLATLAS_DNS_CONTROL", "localhost")
    routes = {"/ok": Reply(200), "/moved": Reply(301, headers={"Location": "/ok"}), "/missing": Reply(404),
              "/slow": Reply(200, delay=2.5), "/reset": Reply(reset=True)}
    with LocalServer(routes, tls=context) as server:
        root = tmp_path / "checkout"
        shutil.copytree(REPO / "catalog" / "vocab", root / "catalog" / "vocab")
        (root / "catalog" / "papers").mkdir()
        (root / "catalog" / "papers" / "old.yaml").write_text(_paper("old", [server.url("/ok"), server.url("/moved")]))
        _git(root, "init", "-q", "-b", "main")
        _git(root, "add", "catalog")
        _git(root, "commit", "-q", "-m", "base")
        yield root, server


def links(root: Path, *args: str) -> int:
    return main(["--root", str(root), "links", "--timeout", str(TIMEOUT), "--retries", "0", *args])


def test_full_check_passes_with_only_ok_links(https_catalog, capsys):
    root, server = https_catalog
    assert links(root, "--all") == 0
    out = capsys.readouterr().out
    assert "2 link(s): 2 ok, 0 dead, 0 unknown" in out
    assert f"redirects to {server.url('/ok')}" in out
    assert (root / CACHE_FILE).exists()


def test_pull_request_check_sees_only_new_links_and_fails_on_a_dead_one(https_catalog, capsys):
    root, server = https_catalog
    new = root / "catalog" / "papers" / "new.yaml"
    new.write_text(_paper("new", [server.url("/ok"), server.url("/missing"), server.url("/slow"), server.url("/reset"),
                                  "https://no-such-host.invalid/paper"]))
    catalog_before = {p: p.read_bytes() for p in (root / "catalog").rglob("*") if p.is_file()}
    assert links(root, "--changed-since", "main", "--json", "--no-cache") == 1
    assert {p: p.read_bytes() for p in (root / "catalog").rglob("*") if p.is_file()} == catalog_before
    assert not (root / CACHE_FILE).exists()  # --no-cache
    report = json.loads(capsys.readouterr().out)
    by_path = {row["url"].rsplit("/", 1)[1]: row for row in report["links"]}
    assert set(by_path) == {"missing", "slow", "reset", "paper"}  # /ok was already in the catalog at main
    assert by_path["missing"]["status"] == "dead" and by_path["missing"]["where"] == ["catalog/papers/new.yaml: links.1.url"]
    assert by_path["paper"]["status"] == "dead" and "does not resolve" in by_path["paper"]["note"]
    assert by_path["slow"]["status"] == "unknown" and by_path["reset"]["status"] == "unknown"
    assert report["summary"] == {"ok": 0, "dead": 2, "unknown": 2}
    assert report["changed_since"] == "main"
    assert not any(path == "/moved" for _, _, path, _ in server.log)


def test_a_link_changed_in_an_existing_entry_is_checked(https_catalog, capsys):
    root, server = https_catalog
    old = root / "catalog" / "papers" / "old.yaml"
    old.write_text(old.read_text().replace(server.url("/moved"), server.url("/missing")))
    assert links(root, "--changed-since", "main") == 1
    out = capsys.readouterr().out
    assert "DEAD" in out and server.url("/missing") in out and "catalog/papers/old.yaml: links.1.url" in out
    assert "1 link(s): 0 ok, 1 dead, 0 unknown" in out
    assert {path for _, _, path, _ in server.log} == {"/missing"}


def test_unknown_links_never_fail_a_pull_request(https_catalog, capsys):
    root, server = https_catalog
    (root / "catalog" / "papers" / "new.yaml").write_text(_paper("new", [server.url("/slow"), server.url("/reset")]))
    assert links(root, "--changed-since", "main") == 0
    out = capsys.readouterr().out
    assert "UNKNOWN" in out and "never fails" in out


def test_nothing_changed_means_nothing_checked(https_catalog, capsys):
    root, server = https_catalog
    assert links(root, "--changed-since", "main", "--json") == 0
    assert json.loads(capsys.readouterr().out)["links"] == []
    assert server.log == []


def test_unknown_git_ref_is_a_clear_usage_error(https_catalog, capsys):
    root, _ = https_catalog
    assert links(root, "--changed-since", "origin/no-such-branch") == 2
    assert "git does not know 'origin/no-such-branch'" in capsys.readouterr().err


def test_the_real_catalog_yields_links_for_every_paper():
    refs = collect_links(REPO)
    files = {r.file for r in refs}
    assert "catalog/papers/maml.yaml" in files
    assert all(r.url.startswith("https://") for r in refs)
