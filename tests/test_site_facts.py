"""Facts the site and the README state (issue 24): when papers were added, and the README's Code column."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mlatlas.catalog.loader import load_valid_catalog
from mlatlas.outputs.mdescape import shields_badge
from mlatlas.outputs.readme import paper_row, render_blocks
from mlatlas.outputs.site.added import added_times, first_commits
from mlatlas.outputs.site.pages import SiteContent

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_CATALOG = Path(__file__).parent / "fixtures" / "catalog"
GIT = shutil.which("git")


def _git(root: Path, *args: str, when: str | None = None) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}
    if when:
        env.update(GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)


@pytest.fixture
def two_papers(tmp_path) -> tuple[Path, list[str]]:
    """The fixture catalog (two papers) copied to a fresh folder; the paper ids in catalog order."""
    root = tmp_path / "atlas"
    shutil.copytree(FIXTURE_CATALOG, root)
    ids = sorted(p.stem for p in (root / "catalog" / "papers").glob("*.yaml"))
    assert len(ids) == 2
    return root, ids


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_newest_additions_follow_the_commits_that_added_the_files(two_papers):
    root, (first, second) = two_papers
    papers = root / "catalog" / "papers"
    held = papers / f"{first}.yaml"
    text = held.read_text(encoding="utf-8")
    held.unlink()
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "the second paper first", when="2026-01-02T10:00:00+00:00")
    held.write_text(text, encoding="utf-8")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "then the first", when="2026-03-04T10:00:00+00:00")
    commits = first_commits(root)
    assert commits == {f"{second}.yaml": dt.datetime(2026, 1, 2, 10, tzinfo=dt.timezone.utc),
                       f"{first}.yaml": dt.datetime(2026, 3, 4, 10, tzinfo=dt.timezone.utc)}
    site = SiteContent(load_valid_catalog(root))
    assert [v.paper.id for v in site.newest()] == [first, second]  # added last comes first, whatever its date
    assert site.added_on(site.by_id[first].paper) == dt.date(2026, 3, 4)

    # A paper file not committed yet is the newest addition of all.
    extra = papers / "zz-uncommitted.yaml"
    extra.write_text(text.replace(f"id: {first}", "id: zz-uncommitted"), encoding="utf-8")
    times = added_times(root, {"zz-uncommitted": None, first: None}, {"zz-uncommitted": extra, first: held})
    assert times["zz-uncommitted"] > times[first]


def test_without_git_the_added_field_orders_them(two_papers, monkeypatch):
    root, ids = two_papers
    monkeypatch.setenv("PATH", "")  # no git to run
    assert first_commits(root) is None
    catalog = load_valid_catalog(root)
    site = SiteContent(catalog)
    expected = sorted(catalog.papers.values(), key=lambda p: (p.added, p.date, p.id), reverse=True)
    assert [v.paper.id for v in site.newest()] == [p.id for p in expected]
    assert all(site.added_on(p) == p.added for p in catalog.papers.values())


def test_outside_a_checkout_the_added_field_orders_them(two_papers):
    root, _ = two_papers  # a tmp folder, not a git checkout
    assert first_commits(root) is None


def test_readme_code_column_links_every_reproduction_of_every_reproduced_paper():
    catalog = load_valid_catalog(PROJECT_ROOT)
    table = render_blocks(catalog)["papers"]
    badges = {(f.id, lab.id): shields_badge(lab.name, lab.color) for f in catalog.labels.families for lab in f.labels}
    families = [f.id for f in catalog.labels.families]
    reproduced = [p for p in catalog.papers.values() if p.reproductions]
    assert any(p.code.status == "official" for p in reproduced)  # the case the README used to miss
    for paper in reproduced:
        cells = paper_row(paper, badges, families)
        assert "| " + " | ".join(cells) + " |" in table, paper.id
        for name in paper.reproductions:
            assert f"](reproductions/{name}/)" in cells[-1], (paper.id, cells[-1])
