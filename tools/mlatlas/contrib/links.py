"""Check that the links in the catalog still work.

A link is **dead** only on a definite answer: HTTP 404 or 410, or a host name that does not resolve
while DNS itself works. Time-outs, resets, 5xx and rate limits say nothing about the link, so they are
**unknown** and never fail a pull request. Requests run concurrently but at most ``per_host`` at a time
per host, retried with backoff, honouring ``Retry-After``; definite answers are cached on disk.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
import yaml
from pydantic import ValidationError
from tqdm import tqdm

from mlatlas import __version__
from mlatlas.contrib.arxiv import retry_after_seconds
from mlatlas.catalog.models import Paper
from mlatlas.netio import DeadlineExceeded, abort, within
from mlatlas.catalog.yamlio import YamlError, read_text

USER_AGENT = f"mlatlas/{__version__} (Meta-Learning Atlas link checker)"
CACHE_FILE = Path(".mlatlas-cache") / "links.json"
LINK_FOLDERS = ("catalog/papers", "catalog/resources")
DEAD_CODES = {404, 410}
# Resolved once when a host name fails to resolve, to tell "this name does not exist" from "no DNS here".
DNS_CONTROL_ENV = "MLATLAS_DNS_CONTROL"
DEFAULT_DNS_CONTROL = "arxiv.org"


class LinksError(Exception):
    """A problem with the request itself (e.g. an unknown git ref); the message is for the user."""


@dataclass(frozen=True)
class LinkRef:
    """One URL and where in the catalog it sits."""

    url: str
    file: str  # relative to the project root
    field: str  # e.g. "code.repositories.0.url"


@dataclass
class LinkResult:
    url: str
    status: str  # "ok" | "dead" | "unknown"
    code: int | None = None
    final_url: str | None = None  # where redirects ended, when that differs from url
    note: str = ""
    checked_at: float = field(default_factory=time.time)
    cached: bool = False


# ------------------------------------------------------------------------------------------------
# Which links to check
# ------------------------------------------------------------------------------------------------


def _walk_urls(data, prefix: str = "") -> list[tuple[str, str]]:
    """Every http(s) string in plain YAML data, with its dotted path. Each container is visited once,
    so YAML aliases cannot blow the walk up."""
    found: list[tuple[str, str]] = []
    seen: set[int] = set()
    stack = [(prefix, data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, (dict, list)):
            if id(value) in seen:
                continue
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((f"{path}.{key}" if path else str(key), item) for key, item in items)
        elif isinstance(value, str) and value.startswith(("https://", "http://")):
            found.append((path, value))
    return sorted(found)


def links_in_text(rel_path: str, text: str) -> list[LinkRef]:
    """The links of one catalog file. Papers go through :meth:`Paper.all_links` (which also turns ids
    into URLs); files that do not validate still give the URLs written in them."""
    try:
        data = yaml.safe_load(text)
        pairs: list[tuple[str, str]] = []
        if rel_path.startswith("catalog/papers/") and isinstance(data, dict):
            try:
                pairs = Paper.model_validate(data).all_links()
            except ValidationError:
                pairs = _walk_urls(data)
        else:
            pairs = _walk_urls(data)
    except (yaml.YAMLError, RecursionError):
        return []  # `mlatlas validate` reports broken YAML and nesting too deep to read
    return [LinkRef(url=url, file=rel_path, field=where) for where, url in pairs]


def _catalog_files(root: Path) -> list[str]:
    files: list[str] = []
    for folder in LINK_FOLDERS:
        files += sorted(p.relative_to(root).as_posix() for p in (root / folder).glob("*.yaml"))
    return files


def _text(root: Path, rel: str) -> str:
    """A catalog file's text, or :class:`LinksError` as ``path:line: message`` (a folder, a special file, a
    link outside the repository, undecodable bytes)."""
    try:
        return read_text(root / rel, root=root)
    except YamlError as exc:
        where = f"{rel}:{exc.line}" if exc.line else rel
        raise LinksError(f"{where}: {exc.message}; fix it first (mlatlas validate lists every problem)") from None


def collect_links(root: Path) -> list[LinkRef]:
    """Every link in the catalog."""
    refs: list[LinkRef] = []
    for rel in _catalog_files(root):
        refs += links_in_text(rel, _text(root, rel))
    return refs


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def changed_links(root: Path, ref: str) -> list[LinkRef]:
    """Links in the catalog now that were nowhere in the catalog at git ``ref`` (uncommitted and
    untracked files included). A URL that moved from one entry to another is not checked again."""
    if _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        raise LinksError(f"git does not know {ref!r} here (in CI, fetch it first: git fetch origin <branch>)")
    diff = _git(root, "diff", "--name-only", ref, "--", *LINK_FOLDERS)
    if diff.returncode != 0:
        raise LinksError(f"git diff against {ref!r} failed: {diff.stderr.strip()}")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "--", *LINK_FOLDERS)
    changed = {rel for rel in diff.stdout.split() + untracked.stdout.split() if rel.endswith(".yaml")}
    # The catalog at ref = unchanged files as they are now + changed files as they were at ref.
    old_urls: set[str] = set()
    for rel in _catalog_files(root):
        if rel not in changed:
            old_urls |= {r.url for r in links_in_text(rel, _text(root, rel))}
    for rel in changed:
        before = _git(root, "show", f"{ref}:{rel}")
        if before.returncode == 0:
            old_urls |= {r.url for r in links_in_text(rel, before.stdout)}
    refs: list[LinkRef] = []
    for rel in sorted(changed):
        if (root / rel).exists() or (root / rel).is_symlink():
            refs += [r for r in links_in_text(rel, _text(root, rel)) if r.url not in old_urls]
    return refs


# ------------------------------------------------------------------------------------------------
# Cache of definite answers
# ------------------------------------------------------------------------------------------------


DEAD_TTL_FRACTION = 1 / 24  # a dead answer is trusted for 1/24 of the time an ok one is (1 h of the default 24 h)


class LinkCache:
    """``.mlatlas-cache/links.json``: ok answers younger than ``ttl`` seconds are reused, dead ones only for
    ``dead_ttl`` (far shorter: a link that failed may be back soon, and a red CI should not outlive it)."""

    def __init__(self, path: Path, ttl: float, dead_ttl: float | None = None):
        self.path = path
        self.ttl = ttl
        self.dead_ttl = ttl * DEAD_TTL_FRACTION if dead_ttl is None else min(dead_ttl, ttl)
        self.entries: dict[str, dict] = {}
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.entries = {k: v for k, v in loaded.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass  # no cache yet, or a broken one: start afresh

    def get(self, url: str) -> LinkResult | None:
        entry = self.entries.get(url)
        if not entry:
            return None
        ttl = self.ttl if entry.get("status") == "ok" else self.dead_ttl
        try:
            age = time.time() - float(entry.get("checked_at", 0))
        except (TypeError, ValueError):
            return None
        if not 0 <= age <= ttl:  # a time stamp from the future is not trusted either
            return None
        try:
            return LinkResult(**{**entry, "cached": True})
        except TypeError:
            return None

    def put(self, result: LinkResult) -> None:
        if result.status in ("ok", "dead"):
            self.entries[result.url] = {k: v for k, v in asdict(result).items() if k != "cached"}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".links-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self.entries, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


# ------------------------------------------------------------------------------------------------
# The checker
# ------------------------------------------------------------------------------------------------


class LinkChecker:
    def __init__(
        self,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 1.0,
        per_host: int = 2,
        workers: int = 8,
        max_retry_after: float = 60.0,
        dns_control: str | None = None,
        verify: bool | str = True,
    ):
        self.timeout = timeout  # for each whole request (HEAD, then GET when needed)
        self.retries = retries
        self.backoff = backoff
        self.confirm_after = min(backoff, 5.0)  # pause before the second try that confirms a dead answer
        self.per_host = per_host
        self.workers = workers
        self.max_retry_after = max_retry_after
        self.dns_control = dns_control or os.environ.get(DNS_CONTROL_ENV) or DEFAULT_DNS_CONTROL
        self.verify = verify
        self._lock = threading.Lock()
        self._host_slots: dict[str, threading.Semaphore] = {}
        self._host_not_before: dict[str, float] = {}  # set by Retry-After
        self._dns: dict[str, str] = {}
        self._control_resolves: bool | None = None
        self._local = threading.local()

    # -- helpers ---------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):  # requests.Session is not thread-safe: one per thread
            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            session.verify = self.verify
            self._local.session = session
        return self._local.session

    def _slot(self, host: str) -> threading.Semaphore:
        with self._lock:
            return self._host_slots.setdefault(host, threading.Semaphore(self.per_host))

    @staticmethod
    def _lookup(host: str) -> str:
        """Whether ``host`` resolves: "yes", "no" (the name does not exist) or "unknown" (DNS trouble)."""
        try:
            socket.getaddrinfo(host, None)
            return "yes"
        except socket.gaierror as exc:
            missing = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
            return "no" if exc.errno in missing else "unknown"
        except (UnicodeError, OSError):
            return "unknown"

    def _dns_works(self) -> bool:
        """Whether the control name resolves (looked up once per run)."""
        with self._lock:
            known = self._control_resolves
        if known is None:
            known = self._lookup(self.dns_control) == "yes"
            with self._lock:
                self._control_resolves = known
        return known

    def _resolves(self, host: str) -> str:
        with self._lock:
            if host in self._dns:
                return self._dns[host]
        answer = self._lookup(host)
        if answer == "no" and not self._dns_works():
            answer = "unknown"  # nothing resolves: no network here, not a dead name
        with self._lock:
            self._dns[host] = answer
        return answer

    def _request(self, url: str) -> requests.Response:
        """HEAD, then GET when HEAD is refused or fails (many servers mishandle HEAD); the whole exchange must end
        within ``timeout`` seconds (a server trickling its headers cannot hold the check)."""
        session = self._session()
        opened: list[requests.Response] = []

        def exchange(cancelled) -> requests.Response:
            response = session.head(url, allow_redirects=True, timeout=self.timeout)
            opened.append(response)
            if response.status_code >= 400 and response.status_code != 429 and not cancelled.is_set():
                response.close()
                response = session.get(url, allow_redirects=True, timeout=self.timeout, stream=True)
                opened.append(response)
            response.close()  # only the status matters; never download bodies
            return response

        try:
            return within(self.timeout, exchange, url)
        except DeadlineExceeded:
            for response in opened:
                abort(response)
            raise

    # -- one link --------------------------------------------------------------------------------

    def check_one(self, url: str) -> LinkResult:
        """The link's status; a dead answer is trusted only when a second request, a moment later, agrees
        (one transient 404 from a flaky server or CDN must not turn CI red)."""
        first = self._check_once(url)
        if first.status != "dead" or first.code is None:  # a name that does not resolve needs no second try
            return first
        time.sleep(self.confirm_after)
        second = self._check_once(url)
        if second.status == "dead":
            return first
        second.note = (f"{second.note}; " if second.note else "") + f"a first try answered {first.code}"
        return second

    def _check_once(self, url: str) -> LinkResult:
        host = urlsplit(url).hostname
        if not host:
            return LinkResult(url, "dead", note="not a URL with a host name")
        dns = self._resolves(host)
        if dns == "no":
            return LinkResult(url, "dead", note=f"host name {host} does not resolve")
        if dns == "unknown":  # asking over HTTP would fail the same way, slowly
            return LinkResult(url, "unknown", note=f"could not look up {host} (no DNS here?)")
        result = LinkResult(url, "unknown", note="not checked")
        for attempt in range(self.retries + 1):
            wait = self.backoff * (2**attempt)
            with self._slot(host):
                with self._lock:
                    hold = self._host_not_before.get(host, 0.0) - time.monotonic()
                if hold > 0:
                    time.sleep(hold)
                try:
                    response = self._request(url)
                except requests.Timeout:
                    result = LinkResult(url, "unknown", note=f"timed out after {self.timeout:g} s")
                except requests.ConnectionError as exc:
                    result = LinkResult(url, "unknown", note=f"connection failed: {_reason(exc)}")
                except requests.RequestException as exc:
                    return LinkResult(url, "unknown", note=f"{type(exc).__name__}: {_reason(exc)}")
                else:
                    code = response.status_code
                    final = response.url if response.url != url else None
                    if code < 400:
                        note = f"redirects to {final}" if final else ""
                        return LinkResult(url, "ok", code=code, final_url=final, note=note)
                    if code in DEAD_CODES:
                        return LinkResult(url, "dead", code=code, final_url=final, note=response.reason or "")
                    if code == 429:
                        asked = retry_after_seconds(response.headers.get("Retry-After"))
                        result = LinkResult(url, "unknown", code=code, note="rate limited (429)")
                        if asked is not None:
                            if asked > self.max_retry_after:
                                result.note = f"rate limited; asked to wait {asked:.0f} s"
                                return result
                            wait = max(wait, asked)
                            with self._lock:
                                self._host_not_before[host] = time.monotonic() + asked
                    elif code >= 500:
                        result = LinkResult(url, "unknown", code=code, note=f"server error {code}")
                    else:  # 401/403/... : the server refuses robots, which says nothing about the link
                        return LinkResult(url, "unknown", code=code, note=f"answered {code} {response.reason}")
            if attempt < self.retries:
                time.sleep(wait)
        return result

    # -- many links ------------------------------------------------------------------------------

    def check(
        self, urls: Iterable[str], cache: LinkCache | None = None, progress: bool = False
    ) -> dict[str, LinkResult]:
        todo = list(dict.fromkeys(urls))
        results: dict[str, LinkResult] = {}
        if cache:
            for url in todo:
                if (hit := cache.get(url)) is not None:
                    results[url] = hit
        todo = [u for u in todo if u not in results]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            futures = {pool.submit(self.check_one, url): url for url in todo}
            bar = tqdm(total=len(futures), desc="checking links", unit="link", disable=not progress)
            for future in as_completed(futures):
                result = future.result()
                results[result.url] = result
                if cache:
                    cache.put(result)
                bar.update()
            bar.close()
        if cache:
            cache.save()
        return results


def _reason(exc: BaseException) -> str:
    """The innermost cause inside a requests exception, e.g. 'ConnectionResetError'."""
    inner = exc
    for _ in range(8):
        candidates = [getattr(inner, "reason", None), inner.__cause__, *inner.args]
        nxt = next((c for c in candidates if isinstance(c, BaseException)), None)
        if nxt is None:
            break
        inner = nxt
    return type(inner).__name__


# ------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------

ORDER = {"dead": 0, "unknown": 1, "ok": 2}


def report_rows(refs: list[LinkRef], results: dict[str, LinkResult]) -> list[dict]:
    """One row per URL, with every place it appears, dead first."""
    where: dict[str, list[str]] = {}
    for ref in refs:
        where.setdefault(ref.url, []).append(f"{ref.file}: {ref.field}")
    rows = []
    for url, places in where.items():
        result = results[url]
        rows.append({**asdict(result), "where": places})
    return sorted(rows, key=lambda r: (ORDER[r["status"]], r["url"]))


def summary(rows: list[dict]) -> dict[str, int]:
    counts = {"ok": 0, "dead": 0, "unknown": 0}
    for row in rows:
        counts[row["status"]] += 1
    return counts


def format_table(rows: list[dict], show_ok: bool) -> str:
    shown = [r for r in rows if show_ok or r["status"] != "ok" or r["final_url"]]
    lines = []
    if shown:
        headers = ("STATUS", "CODE", "URL", "WHERE", "NOTE")
        table = [
            (r["status"].upper(), str(r["code"] or "-"), r["url"], "; ".join(r["where"]), r["note"] + (" (cached)" if r["cached"] else ""))
            for r in shown
        ]
        widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers[:-1])]
        for row in (headers, *table):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1])
    counts = summary(rows)
    lines.append(
        f"{len(rows)} link(s): {counts['ok']} ok, {counts['dead']} dead, {counts['unknown']} unknown"
        + ("" if show_ok else " (ok links hidden; --all lists them)")
    )
    if counts["unknown"]:
        lines.append("unknown = no definite answer (time-out, 5xx, rate limit, refused robots); it never fails a check")
    return "\n".join(lines)


def json_report(rows: list[dict], checked_since: str | None) -> str:
    return json.dumps(
        {
            "checked_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "changed_since": checked_since,
            "summary": summary(rows),
            "links": rows,
        },
        indent=2,
    )

