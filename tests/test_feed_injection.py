"""`mlatlas add` writes what comes from the feed into comment lines only after normalising it: a line break
(of any kind YAML knows) in a link, a category or a comment can never start a live YAML key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _local_http import LocalServer, Reply

from test_add_paper import FIXTURES, add, make_root

INJECT = "&#10;needs_code: true&#10;injected: 1&#13;evil: 2"


@pytest.mark.parametrize("old, new", [
    ('term="cs.AI"', f'term="cs.AI{INJECT}"'),
    ('<arxiv:primary_category xmlns:arxiv="http://arxiv.org/schemas/atom" term="cs.LG"',
     f'<arxiv:primary_category xmlns:arxiv="http://arxiv.org/schemas/atom" term="cs.LG{INJECT}"'),
    ('href="http://arxiv.org/abs/1703.03400v3" rel="alternate"', f'href="http://arxiv.org/abs/1703.03400v3{INJECT}" rel="alternate"'),
    ('title="pdf" href="http://arxiv.org/pdf/1703.03400v3"', f'title="pdf" href="http://arxiv.org/pdf/1703.03400v3{INJECT}"'),
    ("ICML 2017. Code at", "ICML 2017.\u2028injected: 1\u0085evil: 2\u2029Code at"),
    ("ICML 2017. Code at", "ICML 2017.\u202e\u200b\u2066 Code at"),  # bidi override, zero-width, isolate
])
def test_feed_text_cannot_add_yaml_keys_to_the_draft(tmp_path, capsys, old, new):
    root = make_root(tmp_path, with_maml=False)
    feed = (FIXTURES / "maml.xml").read_text(encoding="utf-8")
    assert old in feed
    body = feed.replace(old, new).encode("utf-8")
    with LocalServer({"/api/query": Reply(200, body, {"Content-Type": "application/atom+xml"})}) as server:
        assert add(root, server, "1703.03400") == 0
    [draft] = (root / "catalog" / "papers").glob("*.yaml")
    text = draft.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert "injected" not in data and "evil" not in data and data["needs_code"] is False
    for line in text.splitlines():
        assert line.isprintable() or line == "", repr(line)
    # exactly one line per arXiv fact; the injected words stay inside a comment
    for line in text.splitlines():
        if "injected" in line:
            assert line.lstrip().startswith("#"), line
    assert not any(ch in text for ch in "\u2028\u2029\u0085\u202e\u200b\u2066\r")
