"""Write a draft ``catalog/papers/<id>.yaml`` from arXiv metadata (``mlatlas add``).

The draft holds every fact the arXiv feed gives (title, authors, first-version date, ids, links) and
leaves the editorial fields (venue, labels, topics, code, summary) to the contributor, each marked
``TODO(contributor)`` with the allowed choices next to it. Until they are filled in the draft fails
``mlatlas validate`` (empty values) and ``mlatlas todo`` (markers left), with messages naming the line.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from mlatlas.contrib.arxiv import ArxivClient, ArxivEntry, parse_arxiv_id
from mlatlas.catalog.models import DOI_PATTERN, SLUG_PATTERN, LabelVocabulary, Paper, TopicVocabulary, VenueVocabulary
from mlatlas.catalog.problems import Problem, relative
from mlatlas.catalog.yamlio import YamlError, parse_text, read_text

TODO = "TODO(contributor)"
PAPERS = Path("catalog") / "papers"
_STOPWORDS = {"a", "an", "the", "on", "of", "for", "to", "in", "with", "and", "via", "by", "from", "towards", "toward"}


class AddError(Exception):
    """Why a paper cannot be added; the message is for the contributor."""


@dataclass
class Existing:
    file: str  # relative path of the entry
    id: str
    arxiv: str | None
    title: str | None


def _normal_title(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def existing_entries(root: Path) -> list[Existing]:
    """Every paper file, read leniently (a half-finished draft still counts as 'already there')."""
    found = []
    for path in sorted((root / PAPERS).glob("*.yaml")):
        try:
            text = read_text(path, root=root)
        except YamlError as exc:  # a folder, a special file, undecodable bytes: no way to tell what it holds
            raise AddError(f"{Problem(relative(path, root), exc.line, '', exc.message)}; fix it first "
                           "(mlatlas validate lists every problem)") from None
        try:
            data = parse_text(text, path).data
        except YamlError:  # duplicate keys, anchors, broken YAML: read leniently
            try:
                data = yaml.safe_load(text)
            except (yaml.YAMLError, RecursionError):
                data = None
        data = data if isinstance(data, dict) else {}
        ids = data.get("ids") if isinstance(data.get("ids"), dict) else {}
        arxiv = ids.get("arxiv")
        if arxiv is None:  # unreadable file: fall back to searching its text
            match = re.search(r"arxiv:\s*['\"]?([\w.\-/]+)", text)
            arxiv = match.group(1) if match else None
        title = data.get("title")
        found.append(Existing(relative(path, root), str(data.get("id") or path.stem), str(arxiv) if arxiv else None,
                              title if isinstance(title, str) else None))
    return found


def _describe(entry: Existing) -> str:
    return f"{entry.file} (id {entry.id})"


def _read_vocab(root: Path, name: str, model):
    path = root / "catalog" / "vocab" / name
    try:
        return model.model_validate(parse_text(read_text(path, root=root), path).data)
    except YamlError as exc:
        raise AddError(f"{Problem(relative(path, root), exc.line, '', exc.message)}; run `mlatlas validate` and fix "
                       "it first") from None
    except ValidationError as exc:
        raise AddError(f"cannot read {relative(path, root)} ({type(exc).__name__}); run `mlatlas validate` and fix it first") from exc


def suggest_venue(entry: ArxivEntry, venues: VenueVocabulary) -> tuple[str, str] | None:
    """A canonical '<venue> <year>' named by the arXiv journal_ref or comment, and which field named it."""
    names = []
    for venue in venues.venues:
        if venue.kind == "preprint":
            continue  # "arXiv" in a comment never means the paper was published
        names += [(alias, venue.id) for alias in (venue.id, venue.name, *venue.aliases)]
    names.sort(key=lambda pair: -len(pair[0]))  # prefer the longest spelling that matches
    for source, text in (("journal_ref", entry.journal_ref), ("comment", entry.comment)):
        if not text:
            continue
        for alias, venue_id in names:
            found = re.search(rf"(?<![A-Za-z]){re.escape(alias)}(?![A-Za-z])", text, re.IGNORECASE)
            if not found:
                continue
            year = re.search(r"(?<!\d)(19[5-9]\d|20\d\d)(?!\d)", text[found.end():]) or re.search(
                r"(?<!\d)(19[5-9]\d|20\d\d)(?!\d)", text
            )
            if year:
                return f"{venue_id} {year.group(1)}", source
    return None


def draft_id(entry: ArxivEntry, taken: set[str]) -> str:
    """A short, unique id: the method name when the title starts with one ('Reptile: ...'), else the
    title up to its first 'for/with/via', else its first significant words."""
    title = entry.title
    head = re.split(r":| for | with | via | using ", title, maxsplit=1, flags=re.IGNORECASE)[0]
    words = re.findall(r"[a-z0-9]+", head.lower())
    if len(words) > 5 or not words:
        words = [w for w in re.findall(r"[a-z0-9]+", title.lower()) if w not in _STOPWORDS][:5]
    while words and words[0] in _STOPWORDS:
        words = words[1:]
    base = "-".join(words)[:50].strip("-") or f"arxiv-{re.sub(r'[^0-9]+', '-', entry.arxiv_id)}"
    for candidate in [base, f"{base}-{entry.published.year}", *(f"{base}-{i}" for i in range(2, 100))]:
        if candidate not in taken:
            return candidate
    raise AddError(f"could not find a free id for {entry.arxiv_id}; pass one with --id")


def _scalar(value) -> str:
    """``value`` as a one-line YAML scalar or flow list, quoted only when YAML needs it."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1_000_000)
    return text.strip().removesuffix("...").strip()


_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")


def _plain(value, limit: int = 300) -> str:
    """Text from outside (the feed) made safe for one comment line: no line breaks of any kind (YAML also
    breaks lines at U+0085, U+2028 and U+2029), no control or bidirectional-override characters, spaces
    collapsed, at most ``limit`` characters."""
    text = " ".join(_LINE_BREAKS.sub(" ", str(value)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _choices(ids: list[str]) -> str:
    return ", ".join(ids)


def render_draft(
    entry: ArxivEntry,
    paper_id: str,
    labels: LabelVocabulary,
    topics: TopicVocabulary,
    venues: VenueVocabulary,
    today: dt.date,
    command: str,
) -> str:
    family = {f.id: [lab.id for lab in f.labels] for f in labels.families}
    published = entry.published.astimezone(dt.timezone.utc).date()
    method = re.match(r"^([^:]{1,40}):\s", entry.title)
    lines = [
        "# yaml-language-server: $schema=../schema/paper.schema.json",
        f"# Draft written by `{command}` on {today.isoformat()} from the arXiv API.",
        "# Facts from arXiv are filled in; the lines marked TODO are yours to fill (see CONTRIBUTING.md).",
        "# `mlatlas validate` and `mlatlas todo` list what is still missing, with line numbers.",
        f"# arXiv record: v{entry.version or '?'}, last updated {entry.updated.date().isoformat()}, "
        f"primary category {_plain(entry.primary_category or '?', 40)} "
        f"({_plain(', '.join(entry.categories), 200) or 'none'})",
    ]
    if entry.comment:
        lines.append(f"# arXiv comment: {_plain(entry.comment)}")
    if entry.journal_ref:
        lines.append(f"# arXiv journal_ref: {_plain(entry.journal_ref)}")
    for name, url in (("abstract page", entry.abs_url), ("PDF", entry.pdf_url)):
        if url:
            lines.append(f"# arXiv {name}: {_plain(url, 200)}")
    lines += [f"id: {paper_id}", f"title: {_scalar(entry.title)}"]
    if method:
        lines.append(f"method: {_scalar(method.group(1).strip())}  # from the title; check it")
    else:
        lines.append("# method: <short name of the method, e.g. MAML>  (optional; uncomment to use)")
    lines += [
        f"authors: {_scalar(entry.authors)}",
        f"date: {published.isoformat()}  # first arXiv version (v1)",
        f"year: {published.year}",
    ]
    venue = suggest_venue(entry, venues)
    if venue:
        lines.append(
            f"venue: {_scalar(venue[0])}  # {TODO}: suggested by the arXiv {venue[1]}; check it, then delete this comment"
        )
    else:
        lines.append(
            f'venue: ""  # {TODO}: "<venue> <year>" with a venue id from catalog/vocab/venues.yaml, '
            f'e.g. "NeurIPS {published.year}"; "arXiv {published.year}" if never published'
        )
    lines += [
        f"labels:  # {TODO}: choose from catalog/vocab/labels.yaml, then delete this comment",
        f"  framework: []  # one or more of: {_choices(family.get('framework', []))}",
        f"  type: []  # any of: {_choices(family.get('type', []))}",
        f"  modality: []  # any of: {_choices(family.get('modality', []))}",
        f"topics: []  # {TODO}: one or more of: {_choices([t.id for t in topics.topics])}",
        "ids:",
        f"  arxiv: {_scalar(entry.arxiv_id)}",
    ]
    if entry.doi and re.match(DOI_PATTERN, entry.doi):
        lines.append(f"  doi: {_scalar(entry.doi)}")
    elif entry.doi:  # arXiv's field is free text; keep an odd value visible without breaking the entry
        lines.append(f"  # arXiv gives the DOI as {_plain(repr(entry.doi), 120)}, which is not a plain DOI; add it as doi: if it is one")
    lines += [
        "code:",
        f'  status: ""  # {TODO}: official (the authors\' code), community (others\' code) or none',
        "  repositories: []",
    ]
    for repo in sorted(set(re.findall(r"https?://github\.com/[\w.\-]+/[\w.\-]+", entry.comment or ""))):
        repo = re.sub(r"^http://", "https://", repo).rstrip(".")
        lines += [
            f"  # The arXiv comment mentions {repo}; if it is the paper's code, list it instead of []:",
            f"  #   - url: {repo}",
            "  #     official: true",
        ]
    lines += [
        "needs_code: false  # true when no public code exists: the atlas then reproduces the paper",
        f'summary: ""  # {TODO}: 40-900 characters in your own words (do not paste the abstract)',
        f"added: {today.isoformat()}",
    ]
    return "\n".join(lines) + "\n"


def check_draft_facts(text: str, rel_path: str) -> None:
    """Fail now, before anything is written, if the facts taken from arXiv break the data contract.
    The editorial placeholders are swapped for valid stand-ins only for this check."""
    data = yaml.safe_load(text)
    stand_ins = {
        "venue": data["venue"] or f"arXiv {data['year']}",
        "labels": {"framework": ["stand-in"]},
        "topics": ["stand-in"],
        "code": {"status": "none"},
        "summary": "x" * 40,
    }
    try:
        Paper.model_validate({**data, **stand_ins})
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise AddError(f"{rel_path}: the arXiv metadata does not fit the catalog ({details}); add this paper by hand") from exc


def _write_all(files: dict[Path, str]) -> None:
    """Write every file or none: each goes to a temporary file first, then all are renamed."""
    temps: dict[Path, str] = {}
    done: list[Path] = []
    try:
        for target, text in files.items():
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=".yaml.tmp")
            temps[target] = tmp
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
        for target, tmp in temps.items():
            if target.exists():
                raise AddError(f"{target} appeared while adding; nothing written")
            os.replace(tmp, target)
            done.append(target)
    except BaseException:
        for tmp in temps.values():
            Path(tmp).unlink(missing_ok=True)
        for target in done:
            target.unlink(missing_ok=True)
        raise


def add_papers(
    root: Path,
    references: list[str],
    client: ArxivClient,
    today: dt.date | None = None,
    paper_id: str | None = None,
    dry_run: bool = False,
) -> dict[Path, str]:
    """Draft one entry per arXiv reference; all or nothing. Returns {written path: text}."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    try:
        arxiv_ids = list(dict.fromkeys(parse_arxiv_id(ref) for ref in references))
    except ValueError as exc:
        raise AddError(str(exc)) from exc
    if paper_id and len(arxiv_ids) != 1:
        raise AddError("--id names one entry; give a single paper with it")
    if paper_id and not re.match(SLUG_PATTERN, paper_id):
        raise AddError(f"--id {paper_id!r} must be lowercase words joined by '-', e.g. 'proto-nets'")
    existing = existing_entries(root)
    by_arxiv = {e.arxiv: e for e in existing if e.arxiv}
    already = [f"arXiv:{i} is already in the catalog as {_describe(by_arxiv[i])}" for i in arxiv_ids if i in by_arxiv]
    if already:
        raise AddError("; ".join(already) + " — edit that entry instead")

    labels = _read_vocab(root, "labels.yaml", LabelVocabulary)
    topics = _read_vocab(root, "topics.yaml", TopicVocabulary)
    venues = _read_vocab(root, "venues.yaml", VenueVocabulary)
    entries = client.fetch(arxiv_ids)

    by_title = {_normal_title(e.title): e for e in existing if e.title}
    taken = {e.id for e in existing} | {Path(e.file).stem for e in existing}
    if paper_id and paper_id in taken:
        raise AddError(f"the id {paper_id!r} is taken by {PAPERS / (paper_id + '.yaml')}; choose another --id")
    files: dict[Path, str] = {}
    for arxiv_id in arxiv_ids:
        entry = entries[arxiv_id]
        same = by_title.get(_normal_title(entry.title))
        if same:
            raise AddError(f"arXiv:{arxiv_id} ({entry.title!r}) is already in the catalog as {_describe(same)}")
        new_id = paper_id or draft_id(entry, taken)
        taken.add(new_id)
        target = root / PAPERS / f"{new_id}.yaml"
        command = f"mlatlas add arXiv:{arxiv_id}"
        text = render_draft(entry, new_id, labels, topics, venues, today, command)
        check_draft_facts(text, relative(target, root))
        files[target] = text
    if not dry_run:
        _write_all(files)
    return files


def leftover_todos(root: Path) -> list[Problem]:
    """Every line in catalog/ still marked TODO(contributor), as problems naming file, line and field."""
    problems = []
    for path in sorted((root / "catalog").rglob("*.yaml")):
        keys: list[tuple[int, str]] = []  # (indent, key) of the mappings enclosing the current line
        try:
            text = read_text(path, root=root)
        except YamlError as exc:
            problems.append(Problem(relative(path, root), exc.line, "", exc.message))
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            found = re.match(r"^(\s*)(?:-\s+)?([\w$.\-]+):(?:\s|$)", line)
            if found:
                indent = len(found.group(1))
                keys = [(i, k) for i, k in keys if i < indent] + [(indent, found.group(2))]
            if TODO in line:
                field = ".".join(k for _, k in keys) if found else ""
                hint = line.split(TODO, 1)[1].lstrip(": ").strip()
                problems.append(Problem(relative(path, root), number, field, f"left for the contributor: {hint}"))
    return problems
