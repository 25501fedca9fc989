"""`mlatlas add` against a real HTTP server on 127.0.0.1 serving recorded arXiv Atom answers.

Every case runs the real command on a temporary copy of a tiny catalog and checks both the outcome the
contributor sees and that nothing half-written is left in catalog/.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from _local_http import LocalServer, Reply
from pydantic import ValidationError

from mlatlas.contrib.add_paper import leftover_todos, suggest_venue
from mlatlas.contrib.arxiv import ArxivClient, ArxivEntry, parse_arxiv_id
from mlatlas.cli import main
from mlatlas.catalog.models import Paper, VenueVocabulary

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "arxiv"


def atom(name: str) -> Reply:
    return Reply(200, (FIXTURES / name).read_bytes(), {"Content-Type": "application/atom+xml; charset=utf-8"})


def make_root(tmp_path: Path, with_maml: bool) -> Path:
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "catalog" / "vocab", root / "catalog" / "vocab")
    (root / "catalog" / "papers").mkdir(parents=True)
    if with_maml:
        shutil.copy(REPO / "catalog" / "papers" / "maml.yaml", root / "catalog" / "papers" / "maml.yaml")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under catalog/, temporary files included."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "catalog").rglob("*")) if p.is_file()}


def add(root: Path, server: LocalServer, *papers: str, timeout: float = 2.0, retries: int = 2) -> int:
    return main(
        ["--root", str(root), "add", *papers, "--api-url", server.url("/api/query"),
         "--delay", "0.05", "--timeout", str(timeout), "--retries", str(retries)]
    )


@pytest.fixture
def empty_root(tmp_path):
    return make_root(tmp_path, with_maml=False)


@pytest.fixture
def maml_root(tmp_path):
    return make_root(tmp_path, with_maml=True)


# ------------------------------------------------------------------------------------------------
# Success
# ------------------------------------------------------------------------------------------------


def test_normal_paper_gives_a_draft_with_every_arxiv_fact(empty_root, capsys):
    with LocalServer({"/api/query": atom("maml.xml")}) as server:
        assert add(empty_root, server, "https://arxiv.org/abs/1703.03400v3") == 0
    (_, method, path, headers), = server.log
    assert method == "GET"
    assert parse_qs(urlsplit(path).query)["id_list"] == ["1703.03400"]
    assert headers["User-Agent"].startswith("mlatlas/") and "Meta-Learning Atlas" in headers["User-Agent"]

    written = empty_root / "catalog" / "papers" / "model-agnostic-meta-learning.yaml"
    assert "wrote catalog/papers/model-agnostic-meta-learning.yaml" in capsys.readouterr().out
    assert sorted(snapshot(empty_root)) == sorted(
        ["catalog/papers/model-agnostic-meta-learning.yaml"] + [f"catalog/vocab/{p.name}" for p in (REPO / "catalog" / "vocab").iterdir()]
    )
    text = written.read_text()
    data = yaml.safe_load(text)
    assert data["id"] == "model-agnostic-meta-learning"
    assert data["title"] == "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks"  # unwrapped
    assert data["authors"] == ["Chelsea Finn", "Pieter Abbeel", "Sergey Levine"]
    assert data["date"] == dt.date(2017, 3, 9) and data["year"] == 2017
    assert data["ids"] == {"arxiv": "1703.03400"}
    assert data["venue"] == "ICML 2017"  # the arXiv comment starts "ICML 2017."
    assert "# arXiv comment: ICML 2017. Code at https://github.com/cbfinn/maml" in text
    assert "# arXiv PDF: https://arxiv.org/pdf/1703.03400v3" in text
    assert "#   - url: https://github.com/cbfinn/maml" in text  # offered, not asserted
    assert data["added"] == dt.datetime.now(dt.timezone.utc).date()

    # The editorial fields fail validation until the contributor fills them in ...
    with pytest.raises(ValidationError) as caught:
        Paper.model_validate(data)
    failing = {".".join(str(x) for x in e["loc"][:2]) for e in caught.value.errors()}
    assert failing == {"labels.framework", "topics", "code.status", "summary"}
    todos = leftover_todos(empty_root)
    assert [t.field for t in todos] == ["venue", "labels", "topics", "code.status", "summary"]
    lines = text.splitlines()
    for todo in todos:
        assert "TODO(contributor)" in lines[todo.line - 1]

    # ... and once they are, the entry is valid and no marker is left.
    filled = (
        text.replace("venue: ICML 2017  #", "venue: ICML 2017\n#")
        .replace("labels:  #", "labels:\n  #")
        .replace("framework: []", "framework: [meta-learning]")
        .replace("topics: []  #", "topics: [few-shot-learning]\n#")
        .replace('status: ""  #', "status: none\n  #")
        .replace('summary: ""  #', "summary: Learns an initialisation from which a few gradient steps solve a new task.\n#")
    )
    filled = "\n".join(line for line in filled.splitlines() if "TODO(contributor)" not in line) + "\n"
    written.write_text(filled)
    Paper.model_validate(yaml.safe_load(filled))
    assert leftover_todos(empty_root) == []


def test_several_papers_in_one_polite_request(empty_root):
    with LocalServer({"/api/query": atom("reptile_protonets.xml")}) as server:
        assert add(empty_root, server, "arXiv:1803.02999", "https://arxiv.org/pdf/1703.05175v2.pdf") == 0
    assert len(server.log) == 1
    assert parse_qs(urlsplit(server.log[0][2]).query)["id_list"] == ["1803.02999,1703.05175"]
    papers = empty_root / "catalog" / "papers"
    reptile = yaml.safe_load((papers / "first-order-meta-learning-algorithms.yaml").read_text())
    protonets = yaml.safe_load((papers / "prototypical-networks.yaml").read_text())
    assert reptile["authors"] == ["Alex Nichol", "Joshua Achiam", "John Schulman"]
    assert reptile["date"] == dt.date(2018, 3, 8) and reptile["ids"]["arxiv"] == "1803.02999"
    assert reptile["venue"] == ""  # arXiv names no venue: left to the contributor
    assert protonets["title"] == "Prototypical Networks for Few-shot Learning"
    assert protonets["authors"] == ["Jake Snell", "Kevin Swersky", "Richard S. Zemel"]
    assert protonets["date"] == dt.date(2017, 3, 15)


def test_503_then_success_is_retried(empty_root):
    with LocalServer({"/api/query": [Reply(503, b"Service Unavailable"), atom("maml.xml")]}) as server:
        assert add(empty_root, server, "1703.03400") == 0
    assert len(server.log) == 2
    assert (empty_root / "catalog" / "papers" / "model-agnostic-meta-learning.yaml").exists()


def test_429_waits_as_long_as_retry_after_asks(empty_root):
    routes = {"/api/query": [Reply(429, b"Rate exceeded.", {"Retry-After": "1"}), atom("maml.xml")]}
    with LocalServer(routes) as server:
        assert add(empty_root, server, "1703.03400") == 0
    first, second = server.log[0][0], server.log[1][0]
    assert second - first >= 1.0  # the client's own backoff is 0.05 s; only Retry-After explains this
    assert (empty_root / "catalog" / "papers" / "model-agnostic-meta-learning.yaml").exists()


def test_requests_are_spaced_by_the_delay():
    with LocalServer({"/api/query": atom("maml.xml")}) as server:
        client = ArxivClient(api_url=server.url("/api/query"), delay=0.4, timeout=2)
        client.fetch(["1703.03400"])
        client.fetch(["1703.03400"])
    assert server.log[1][0] - server.log[0][0] >= 0.4


def test_separate_runs_keep_the_spacing_too(empty_root):
    """Each run makes a new client; only the stamp file in .mlatlas-cache carries the time across."""
    with LocalServer({"/api/query": atom("maml.xml")}) as server:
        args = ["--root", str(empty_root), "add", "1703.03400", "--dry-run",
                "--api-url", server.url("/api/query"), "--delay", "0.5"]
        assert main(args) == 0
        assert main(args) == 0
    assert server.log[1][0] - server.log[0][0] >= 0.5
    assert (empty_root / ".mlatlas-cache" / "arxiv-last-request").exists()


def test_default_delay_is_the_three_seconds_arxiv_asks_for(monkeypatch):
    monkeypatch.delenv("MLATLAS_ARXIV_DELAY", raising=False)
    monkeypatch.delenv("MLATLAS_ARXIV_API", raising=False)
    client = ArxivClient()
    assert client.delay == 3.0 and client.api_url == "https://export.arxiv.org/api/query"
    monkeypatch.setenv("MLATLAS_ARXIV_API", "http://127.0.0.1:9/api/query")
    assert ArxivClient().api_url == "http://127.0.0.1:9/api/query"


# ------------------------------------------------------------------------------------------------
# Refusals: each names the problem, and catalog/ is exactly as before
# ------------------------------------------------------------------------------------------------


def test_paper_already_in_catalog_is_refused_without_asking_arxiv(maml_root, capsys):
    before = snapshot(maml_root)
    with LocalServer({"/api/query": atom("maml.xml")}) as server:
        assert add(maml_root, server, "arXiv:1703.03400") == 1
    err = capsys.readouterr().err
    assert "arXiv:1703.03400 is already in the catalog as catalog/papers/maml.yaml (id maml)" in err
    assert "nothing was written" in err
    assert server.log == []
    assert snapshot(maml_root) == before


def test_one_duplicate_in_a_batch_writes_nothing(maml_root, capsys):
    before = snapshot(maml_root)
    with LocalServer({"/api/query": atom("reptile_protonets.xml")}) as server:
        assert add(maml_root, server, "1803.02999", "1703.03400") == 1
    assert "catalog/papers/maml.yaml" in capsys.readouterr().err
    assert snapshot(maml_root) == before


@pytest.mark.parametrize(
    "fixture, paper, message",
    [
        ("unknown_id.xml", "1703.99999", "arXiv has no paper 1703.99999"),
        ("error_entry.xml", "1703.0340", "arXiv refused the query: incorrect id format for 1703.0340"),
        ("malformed.xml", "1703.03400", "not well-formed XML"),
        ("entity_expansion.xml", "1703.03400", "refused for safety"),
    ],
)
def test_bad_answers_are_reported_and_nothing_is_written(empty_root, capsys, fixture, paper, message):
    before = snapshot(empty_root)
    with LocalServer({"/api/query": atom(fixture)}) as server:
        assert add(empty_root, server, paper) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(server.log) == 1  # a definite answer is not retried
    assert snapshot(empty_root) == before


def test_entity_expansion_is_refused_quickly(empty_root):
    with LocalServer({"/api/query": atom("entity_expansion.xml")}) as server:
        started = time.monotonic()
        assert add(empty_root, server, "1703.03400") == 1
    assert time.monotonic() - started < 2  # expanding it would take minutes and gigabytes


def test_slow_answer_times_out_after_the_retries(empty_root, capsys):
    before = snapshot(empty_root)
    with LocalServer({"/api/query": Reply(200, b"", delay=1.5)}) as server:
        started = time.monotonic()
        assert add(empty_root, server, "1703.03400", timeout=0.3, retries=1) == 1
        elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert "failed after 2 attempts: no answer within 0.3 s" in err
    assert len(server.log) == 2 and elapsed < 3
    assert snapshot(empty_root) == before


def test_unreachable_api_is_reported(empty_root, capsys):
    with LocalServer({}) as server:
        url = server.url("/api/query")
    # the server is closed now: nothing listens on that port
    code = main(["--root", str(empty_root), "add", "1703.03400", "--api-url", url, "--delay", "0", "--retries", "1"])
    assert code == 1
    assert "the connection was refused (nothing listens on that port)" in capsys.readouterr().err


def test_malformed_api_url_is_a_clean_error(empty_root, capsys):
    code = main(["--root", str(empty_root), "add", "1703.03400", "--api-url", "localhost:8000/api", "--delay", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot ask localhost:8000/api" in err and "Traceback" not in err


def test_not_an_arxiv_reference_is_refused_before_any_request(empty_root, capsys):
    with LocalServer({"/api/query": atom("maml.xml")}) as server:
        assert add(empty_root, server, "https://example.org/abs/1703.03400") == 1
    assert "is not an arxiv.org URL" in capsys.readouterr().err
    assert server.log == []


# ------------------------------------------------------------------------------------------------
# Pieces
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1703.03400", "1703.03400"),
        ("arXiv:1703.03400v3", "1703.03400"),
        ("ARXIV:1703.03400", "1703.03400"),
        ("https://arxiv.org/abs/1703.03400", "1703.03400"),
        ("http://export.arxiv.org/abs/1703.03400v2", "1703.03400"),
        ("https://arxiv.org/pdf/1703.03400v3.pdf", "1703.03400"),
        ("hep-th/9901001", "hep-th/9901001"),
        ("https://arxiv.org/abs/cs.LG/0101001v1", "cs.LG/0101001"),
    ],
)
def test_arxiv_references(text, expected):
    assert parse_arxiv_id(text) == expected


@pytest.mark.parametrize("text", ["1703.034", "maml", "https://arxiv.org/list/cs.LG/recent", "10.1000/xyz"])
def test_not_arxiv_references(text):
    with pytest.raises(ValueError):
        parse_arxiv_id(text)


@pytest.mark.parametrize(
    "journal_ref, comment, expected",
    [
        ("Advances in Neural Information Processing Systems 30 (NIPS 2017)", None, ("NeurIPS 2017", "journal_ref")),
        (None, "Accepted at ICLR 2018; 14 pages", ("ICLR 2018", "comment")),
        (None, "International Conference on Machine Learning, 2019", ("ICML 2019", "comment")),
        ("IEEE TPAMI 44(9), 2022", None, ("TPAMI 2022", "journal_ref")),
        (None, "arXiv preprint, 2020", None),
        (None, "10 pages, 4 figures", None),
    ],
)
def test_venue_suggestion_uses_the_venue_vocabulary(journal_ref, comment, expected):
    venues = VenueVocabulary.model_validate(yaml.safe_load((REPO / "catalog/vocab/venues.yaml").read_text()))
    entry = ArxivEntry(
        arxiv_id="1703.03400", version=1, title="t", authors=["a"], abstract="",
        published=dt.datetime(2017, 3, 9, tzinfo=dt.timezone.utc), updated=dt.datetime(2017, 3, 9, tzinfo=dt.timezone.utc),
        journal_ref=journal_ref, comment=comment,
    )
    assert suggest_venue(entry, venues) == expected


def test_add_lists_the_lines_left_to_fill_in(empty_root, capsys):
    with LocalServer({"/api/query": atom("maml.xml")}) as server:
        assert add(empty_root, server, "1703.03400") == 0
    out = capsys.readouterr().out
    assert "catalog/papers/model-agnostic-meta-learning.yaml:16: labels: left for the contributor" in out
    assert "code.status: left for the contributor: official (the authors' code)" in out


def test_dry_run_prints_the_draft_and_writes_nothing(empty_root, capsys):
    before = snapshot(empty_root)
    with LocalServer({"/api/query": atom("maml.xml")}) as server:
        code = main(["--root", str(empty_root), "add", "1703.03400", "--dry-run", "--id", "maml",
                     "--api-url", server.url("/api/query"), "--delay", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert "--- catalog/papers/maml.yaml (dry run, not written)" in out and "\nid: maml\n" in out
    assert snapshot(empty_root) == before


def test_same_title_without_arxiv_id_is_found_after_fetching(empty_root, capsys):
    entry = yaml.safe_load((REPO / "catalog" / "papers" / "maml.yaml").read_text())
    entry["id"], entry["ids"] = "maml-icml", {"proceedings": entry["ids"]["proceedings"]}
    (empty_root / "catalog" / "papers" / "maml-icml.yaml").write_text(yaml.safe_dump(entry))
    before = snapshot(empty_root)
    with LocalServer({"/api/query": atom("maml.xml")}) as server:
        assert add(empty_root, server, "1703.03400") == 1
    assert "is already in the catalog as catalog/papers/maml-icml.yaml (id maml-icml)" in capsys.readouterr().err
    assert snapshot(empty_root) == before


def test_taken_id_gets_the_year_appended(empty_root):
    other = {"id": "prototypical-networks", "title": "Some other paper about prototypes"}
    (empty_root / "catalog" / "papers" / "prototypical-networks.yaml").write_text(yaml.safe_dump(other))
    with LocalServer({"/api/query": atom("reptile_protonets.xml")}) as server:
        assert add(empty_root, server, "1703.05175") == 0
    written = yaml.safe_load((empty_root / "catalog" / "papers" / "prototypical-networks-2017.yaml").read_text())
    assert written["id"] == "prototypical-networks-2017"
    assert written["title"] == "Prototypical Networks for Few-shot Learning"


def test_a_failed_rename_leaves_no_file_behind(empty_root, monkeypatch, capsys):
    """Failure injection: the second of two renames fails (disk full, say); the first is undone."""
    import os

    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    before = snapshot(empty_root)
    with LocalServer({"/api/query": atom("reptile_protonets.xml")}) as server:
        code = main(["--root", str(empty_root), "add", "1803.02999", "1703.05175",
                     "--api-url", server.url("/api/query"), "--delay", "0"])
    assert code == 1 and len(calls) == 2
    err = capsys.readouterr().err
    assert "could not read or write the catalog: [Errno 28] No space left on device" in err and "Traceback" not in err
    assert snapshot(empty_root) == before


def test_external_entities_are_refused_too():
    """An XXE payload (an entity reading a local file) never gets as far as reading the file."""
    from mlatlas.contrib.arxiv import ArxivError, parse_feed

    payload = (
        b'<?xml version="1.0"?>\n<!DOCTYPE feed [<!ENTITY secret SYSTEM "file:///etc/hostname">]>\n'
        b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/1703.03400v3</id>'
        b"<title>&secret;</title></entry></feed>"
    )
    with pytest.raises(ArxivError, match="refused for safety"):
        parse_feed(payload, ["1703.03400"])
