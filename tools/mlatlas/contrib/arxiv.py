"""Fetch paper metadata from the arXiv API (an Atom feed) politely and parse it safely.

arXiv asks API users for at most one request every three seconds and a descriptive User-Agent; the
client here keeps to both, retries transient failures with exponential backoff and honours
``Retry-After``. The feed is parsed with defusedxml, which refuses entity declarations, so a hostile
or broken answer can never expand into gigabytes or read local files.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import defusedxml.ElementTree as SafeET
import requests
from defusedxml import DefusedXmlException

from mlatlas import __version__
from mlatlas.netio import TooLarge, get_body, unreachable

DEFAULT_API_URL = "https://export.arxiv.org/api/query"
API_URL_ENV = "MLATLAS_ARXIV_API"
DELAY_ENV = "MLATLAS_ARXIV_DELAY"
USER_AGENT = f"mlatlas/{__version__} (Meta-Learning Atlas catalog tool; adds papers from arXiv metadata)"

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"

# New-style ids (1703.03400, optionally v3) and old-style ids (hep-th/9901001, cs.LG/0101001).
_NEW_ID = r"\d{4}\.\d{4,5}"
_OLD_ID = r"[a-z\-]+(?:\.[A-Z]{2})?/\d{7}"
_ID_WITH_VERSION = re.compile(rf"^(?P<id>{_NEW_ID}|{_OLD_ID})(?:v(?P<version>\d+))?$")


class ArxivError(Exception):
    """Any failure to get usable metadata from arXiv; the message is meant for the user."""


class ArxivNotFound(ArxivError):
    """arXiv answered, but has no paper with the requested id."""


def parse_arxiv_id(text: str) -> str:
    """The bare arXiv id (no version) in ``text``: an id, ``arXiv:<id>`` or an arxiv.org URL.

    >>> parse_arxiv_id("https://arxiv.org/pdf/1703.03400v3.pdf")
    '1703.03400'
    """
    raw = text.strip()
    if re.match(r"^https?://", raw, re.IGNORECASE):
        parts = urlsplit(raw)
        host = parts.hostname or ""
        if not (host == "arxiv.org" or host.endswith(".arxiv.org")):
            raise ValueError(f"{text!r} is not an arxiv.org URL")
        match = re.match(r"^/(?:abs|pdf|html)/(?P<rest>.+?)(?:\.pdf)?/?$", parts.path)
        if not match:
            raise ValueError(f"{text!r} is not a link to an arXiv paper (expected /abs/<id> or /pdf/<id>)")
        raw = match.group("rest")
    elif raw.lower().startswith("arxiv:"):
        raw = raw[len("arxiv:"):]
    found = _ID_WITH_VERSION.match(raw.strip())
    if not found:
        raise ValueError(
            f"{text!r} is not an arXiv id; write it like 1703.03400, arXiv:1703.03400 or https://arxiv.org/abs/1703.03400"
        )
    return found.group("id")


@dataclass
class ArxivEntry:
    """What the arXiv feed says about one paper."""

    arxiv_id: str
    version: int | None
    title: str
    authors: list[str]
    abstract: str
    published: dt.datetime  # first version (v1)
    updated: dt.datetime  # latest version
    primary_category: str | None = None
    categories: list[str] = field(default_factory=list)
    doi: str | None = None
    journal_ref: str | None = None
    comment: str | None = None
    abs_url: str | None = None
    pdf_url: str | None = None


def _text(element, path: str) -> str | None:
    found = element.find(path)
    if found is None or found.text is None:
        return None
    return " ".join(found.text.split()) or None  # arXiv hard-wraps titles and abstracts


def _timestamp(value: str | None, what: str, arxiv_id: str) -> dt.datetime:
    if not value:
        raise ArxivError(f"arXiv's entry for {arxiv_id} has no <{what}> date")
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ArxivError(f"arXiv's entry for {arxiv_id} has an unreadable <{what}> date {value!r}") from exc


def _https(url: str | None) -> str | None:
    return re.sub(r"^http://", "https://", url) if url else None


def _entry(element) -> ArxivEntry:
    entry_id = _text(element, f"{ATOM}id") or ""
    match = re.search(rf"/abs/(?P<id>{_NEW_ID}|{_OLD_ID})(?:v(?P<version>\d+))?$", entry_id)
    if not match:
        raise ArxivError(f"arXiv returned an entry with an unexpected id {entry_id!r}")
    arxiv_id = match.group("id")
    title = _text(element, f"{ATOM}title")
    authors = [name for a in element.findall(f"{ATOM}author") if (name := _text(a, f"{ATOM}name"))]
    if not title or not authors:
        raise ArxivError(f"arXiv's entry for {arxiv_id} has no title or no authors")
    links = {(link.get("rel"), link.get("title")): link.get("href") for link in element.findall(f"{ATOM}link")}
    primary = element.find(f"{ARXIV}primary_category")
    return ArxivEntry(
        arxiv_id=arxiv_id,
        version=int(match.group("version")) if match.group("version") else None,
        title=title,
        authors=authors,
        abstract=_text(element, f"{ATOM}summary") or "",
        published=_timestamp(_text(element, f"{ATOM}published"), "published", arxiv_id),
        updated=_timestamp(_text(element, f"{ATOM}updated"), "updated", arxiv_id),
        primary_category=primary.get("term") if primary is not None else None,
        categories=[c.get("term") for c in element.findall(f"{ATOM}category") if c.get("term")],
        doi=_text(element, f"{ARXIV}doi"),
        journal_ref=_text(element, f"{ARXIV}journal_ref"),
        comment=_text(element, f"{ARXIV}comment"),
        abs_url=_https(links.get(("alternate", None))),
        pdf_url=_https(links.get(("related", "pdf"))),
    )


def parse_feed(body: bytes, requested: list[str]) -> dict[str, ArxivEntry]:
    """The entries of an arXiv Atom feed, by bare id. Raises :class:`ArxivError` for anything unusable
    and :class:`ArxivNotFound` naming every requested id the feed does not contain."""
    try:
        # forbid_dtd: the arXiv feed never has a DTD, so any DTD (and so any entity) is refused outright.
        root = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ArxivError(f"arXiv's answer declares a DTD or XML entities, refused for safety ({type(exc).__name__})") from exc
    except SafeET.ParseError as exc:
        start = body[:60].decode("utf-8", "replace").strip()
        raise ArxivError(f"arXiv's answer is not well-formed XML ({exc}); it starts with {start!r}") from exc
    if root.tag != f"{ATOM}feed":
        raise ArxivError(f"arXiv's answer is XML but not an Atom feed (root element {root.tag!r})")
    entries: dict[str, ArxivEntry] = {}
    for element in root.findall(f"{ATOM}entry"):
        entry_id = _text(element, f"{ATOM}id") or ""
        if "/api/errors" in entry_id:  # arXiv reports bad queries as an entry titled "Error"
            raise ArxivError(f"arXiv refused the query: {_text(element, f'{ATOM}summary') or entry_id}")
        entry = _entry(element)
        entries[entry.arxiv_id] = entry
    missing = [i for i in requested if i not in entries]
    if missing:
        raise ArxivNotFound(f"arXiv has no paper {', '.join(missing)} (check the id on https://arxiv.org)")
    return entries


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


MAX_RESPONSE_BYTES = 8 * 1024 * 1024  # a feed of a few hundred entries is well under 1 MiB


class ArxivClient:
    """A polite arXiv API client: one request at a time, ``delay`` seconds apart, retried with backoff."""

    def __init__(
        self,
        api_url: str | None = None,
        delay: float | None = None,
        timeout: float = 20.0,
        retries: int = 3,
        backoff: float | None = None,
        max_retry_after: float = 120.0,
        session: requests.Session | None = None,
        stamp: Path | None = None,
        max_bytes: int = MAX_RESPONSE_BYTES,
        progress: Callable[[str], None] | None = None,
    ):
        self.api_url = api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL
        self.delay = float(delay if delay is not None else os.environ.get(DELAY_ENV, 3.0))
        self.timeout = timeout  # for each whole request: connecting, headers and body
        self.max_bytes = max_bytes  # as sent (compressed); four times that once decoded
        self.retries = retries
        self.backoff = self.delay if backoff is None else backoff  # first wait after a failure
        self.max_retry_after = max_retry_after
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # A file holding the time the last request ended, so that runs in quick succession
        # (a shell loop of `mlatlas add`) keep the spacing too.
        self.stamp = stamp
        self._last_request = -float("inf")
        self._lock = threading.Lock()
        self.progress = progress or (lambda line: None)  # told what the client waits for, as it waits
        self.host = urlsplit(self.api_url).netloc or self.api_url

    def _wait_turn(self) -> None:
        """Sleep until ``delay`` seconds have passed since the previous answer ended (in any run)."""
        pause = self._last_request + self.delay - time.monotonic()
        if self.stamp is not None:
            try:
                pause = max(pause, float(self.stamp.read_text()) + self.delay - time.time())
            except (OSError, ValueError):
                pass  # no earlier run, or an unreadable stamp
        if pause > 0:
            if pause >= 1:
                self.progress(f"waiting {min(pause, self.delay):.0f} s before asking {self.host} (arXiv asks for "
                              f"{self.delay:g} s between requests)")
            time.sleep(min(pause, self.delay))

    def _stamp_now(self) -> None:
        self._last_request = time.monotonic()
        if self.stamp is not None:
            try:
                self.stamp.parent.mkdir(parents=True, exist_ok=True)
                self.stamp.write_text(repr(time.time()))
            except OSError:
                pass  # a read-only checkout only loses the spacing across runs

    def _get(self, params: dict[str, str]) -> bytes:
        """The body of one successful answer, after up to ``retries`` retries of transient failures."""
        problem = "no attempt made"
        attempts = self.retries + 1
        for attempt in range(attempts):
            wait = self.backoff * (2**attempt)
            with self._lock:
                self._wait_turn()
                self.progress(f"asking {self.host} for {params.get('id_list', 'metadata')} (attempt {attempt + 1} "
                              f"of {attempts}, waiting up to {self.timeout:g} s)")
                try:
                    response, body = get_body(self.session, self.api_url, params=params, deadline_s=self.timeout,
                                              timeout=self.timeout, max_bytes=self.max_bytes,
                                              max_decoded=self.max_bytes * 4)
                except TooLarge as exc:  # the same server will send the same again
                    raise ArxivError(f"{self.api_url}: {exc}; not an arXiv API answer") from exc
                except requests.Timeout:
                    problem = f"no answer within {self.timeout:g} s"
                    response = None
                except requests.ConnectionError as exc:
                    reason = unreachable(exc)
                    if reason:  # offline, a wrong host, a closed port: waiting and asking again cannot help
                        raise ArxivError(f"cannot reach {self.host}: {reason}") from exc
                    problem = f"could not connect ({type(exc).__name__})"
                    response = None
                except requests.RequestException as exc:  # e.g. a malformed --api-url: retrying cannot help
                    raise ArxivError(f"cannot ask {self.api_url}: {exc}") from exc
                finally:
                    self._stamp_now()
            if response is not None:
                if response.status_code == 200 and not body.startswith(b"Rate exceeded"):
                    return body
                if response.status_code == 429 or body.startswith(b"Rate exceeded"):
                    problem = "arXiv asked us to slow down (429)"
                    asked = retry_after_seconds(response.headers.get("Retry-After"))
                    if asked is not None:
                        if asked > self.max_retry_after:
                            raise ArxivError(f"arXiv asked us to wait {asked:.0f} s before retrying; try again later")
                        wait = max(wait, asked)
                elif response.status_code >= 500:
                    problem = f"arXiv answered {response.status_code} {response.reason}"
                else:  # 4xx other than 429 will not get better by asking again
                    raise ArxivError(f"arXiv answered {response.status_code} {response.reason} for {response.url}")
            if attempt < self.retries:
                self.progress(f"{problem}; asking again in {wait:g} s")
                time.sleep(wait)
        raise ArxivError(f"arXiv API at {self.api_url} failed after {self.retries + 1} attempts: {problem}")

    def fetch(self, arxiv_ids: list[str]) -> dict[str, ArxivEntry]:
        """Metadata for every id, in one request; raises :class:`ArxivError` unless all are found."""
        ids = list(dict.fromkeys(arxiv_ids))
        body = self._get({"id_list": ",".join(ids), "max_results": str(len(ids))})
        return parse_feed(body, ids)
