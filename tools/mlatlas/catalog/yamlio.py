"""Read one YAML file safely and remember where each value sits, so errors can name a line.

Why not ``yaml.safe_load``: it accepts anchors and aliases (the "billion laughs" bomb), silently keeps
the last of two duplicate keys and forgets line numbers. Here a file is size-checked, scanned for
anchors, composed into a node tree by libyaml (fast) and turned into plain Python by a small walker
that rejects duplicate keys and unsupported tags. Line numbers are looked up only when a problem is
reported, by composing the file again (problems are rare, catalogs are large).
"""

from __future__ import annotations

import os
import stat
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property, lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 256 * 1024  # a paper entry is ~2 KiB; anything this large is a mistake or an attack
PARALLEL_FROM = 2000  # files; below this a process pool costs more than it saves

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available; same results
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"

# The safe loader's implicit resolvers (plain scalar -> int, float, bool, null, timestamp ... tag), looked up
# by first character as yaml.resolver.Resolver.resolve does, with the wildcard resolvers already appended.
_RESOLVERS = _BaseLoader.yaml_implicit_resolvers
_WILDCARD = list(_RESOLVERS.get(None, []))
_IMPLICIT = {first: resolvers + _WILDCARD for first, resolvers in _RESOLVERS.items() if first is not None}


class _Loader(_BaseLoader):
    """The safe loader with a quicker tag resolver giving the same tags as PyYAML's (the composer asks it once
    per node, which was a third of parsing time). There are no path resolvers, so descending into and
    ascending out of nodes has nothing to track."""

    def descend_resolver(self, current_node, current_index):
        pass

    def ascend_resolver(self):
        pass

    def resolve(self, kind, value, implicit):
        if kind is ScalarNode:
            return _plain_scalar_tag(value) if implicit[0] else _STR
        return _SEQ if kind is SequenceNode else _MAP


@lru_cache(maxsize=4096)  # plain scalars repeat a lot: every key of every file, labels, booleans ...
def _plain_scalar_tag(value: str) -> str:
    for tag, regexp in _IMPLICIT.get(value[:1], _WILDCARD):
        if regexp.match(value):
            return tag
    return _STR


assert not _BaseLoader.yaml_path_resolvers, "path resolvers need the resolver's descend/ascend bookkeeping"
_SCALARS = yaml.SafeLoader.yaml_constructors  # tag -> constructor for null, bool, int, float, timestamp
_SCALAR_BUILDER = yaml.constructor.SafeConstructor()


class YamlError(Exception):
    """A file that cannot be read as plain YAML data; ``line`` is 1-based (0 when unknown)."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message

    def __reduce__(self):  # picklable, so worker processes can return it
        return (YamlError, (self.line, self.message))


@dataclass
class YamlDoc:
    """A parsed file: its text, its data, and line look-ups for error messages."""

    path: Path
    text: str
    data: Any

    def line_of(self, loc: tuple | list) -> int:
        """Line of the deepest key or item along ``loc`` (e.g. ``("code", "repositories", 0, "url")``)
        that exists in the file; the first line of the document when none does."""
        node = self._root_node
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, MappingNode):
                for key, value in node.value:
                    if isinstance(key, ScalarNode) and key.value == str(part):
                        line, node = key.start_mark.line + 1, value
                        break
                else:
                    return line
            elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    @cached_property
    def _root_node(self) -> Node | None:
        return compose(self.text)  # composed again only when a problem needs a line

    def has(self, loc: tuple | list) -> bool:
        """Whether ``loc`` names a value present in the data."""
        value = self.data
        for part in loc:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
                value = value[part]
            else:
                return False
        return True


def compose(text: str) -> Node | None:
    return yaml.compose(text, Loader=_Loader)


def _reject_anchors(text: str) -> None:
    # Anchors need '&' and aliases need '*'; most files hold neither, so the event scan is usually skipped.
    if "&" not in text and "*" not in text:
        return
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise YamlError(
                event.start_mark.line + 1,
                "YAML anchors and aliases (&name, *name) are not allowed; write the value out in full",
            )


def _to_python(node: Node) -> Any:
    tag = node.tag
    if tag == _STR:
        return node.value
    if isinstance(node, MappingNode):
        if tag != _MAP:
            raise YamlError(node.start_mark.line + 1, f"unsupported YAML tag {tag!r}")
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise YamlError(key_node.start_mark.line + 1, "mapping keys must be plain text")
            # Text nodes (most of them) are read in place: the same as the first test of _to_python, one call less.
            key = key_node.value if key_node.tag == _STR else _to_python(key_node)
            if key in out:
                raise YamlError(key_node.start_mark.line + 1, f"duplicate key {key!r} (each key may appear once)")
            out[key] = value_node.value if value_node.tag == _STR else _to_python(value_node)
        return out
    if isinstance(node, SequenceNode):
        if tag != _SEQ:
            raise YamlError(node.start_mark.line + 1, f"unsupported YAML tag {tag!r}")
        return [item.value if item.tag == _STR else _to_python(item) for item in node.value]
    build = _SCALARS.get(tag)
    # A collection tag on a scalar ('x: !!set a') would give a lazy generator instead of a value.
    if build is None or tag.endswith((":binary", ":merge", ":value", ":yaml", ":map", ":seq", ":set", ":omap", ":pairs")):
        raise YamlError(node.start_mark.line + 1, f"unsupported YAML tag {tag!r}")
    try:
        return build(_SCALAR_BUILDER, node)
    except (ValueError, OverflowError, yaml.YAMLError) as exc:
        if not node.style and _plain_scalar_tag(node.value) == tag:
            # Typed only by its look ('date: 2017-02-30' looks like a date and is none): kept as the text it is, so
            # the model reports it in its own words, in the same run as every other problem of the file.
            return node.value
        raise YamlError(node.start_mark.line + 1, f"cannot read value {node.value!r}: {exc}") from None
    except (KeyError, AttributeError, TypeError):  # an explicit tag on a value it does not fit: '!!bool maybe'
        raise YamlError(node.start_mark.line + 1, f"cannot read value {node.value!r} as {tag.rsplit(':', 1)[-1]}") from None


def parse_text(text: str, path: Path) -> YamlDoc:
    """Parse YAML text into a :class:`YamlDoc`, raising :class:`YamlError` with the line of the fault."""
    try:
        _reject_anchors(text)
        node = compose(text)
        if node is None:
            raise YamlError(1, "the file holds no data")
        data = _to_python(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = ": ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise YamlError(mark.line + 1 if mark else 0, f"broken YAML: {detail}") from None
    except yaml.YAMLError as exc:
        raise YamlError(0, f"broken YAML: {exc}") from None
    except RecursionError:
        raise YamlError(0, "YAML nested too deeply") from None
    return YamlDoc(path=path, text=text, data=data)


def parse_keeping_first(text: str, path: Path) -> tuple[YamlDoc, list[YamlError]]:
    """:func:`parse_text` for a file with keys written twice in a mapping: each mapping keeps a key's first value
    and the later ones come back as errors, so that the file's other problems are reported in the same run.
    Any other fault raises :class:`YamlError` as :func:`parse_text` does."""
    try:
        _reject_anchors(text)
        node = compose(text)
    except yaml.YAMLError:
        return parse_text(text, path), []  # raises the same error, worded as usual
    if node is None:
        raise YamlError(1, "the file holds no data")
    duplicates: list[YamlError] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, MappingNode):
            seen, kept = set(), []
            for key_node, value_node in current.value:
                key = key_node.value if isinstance(key_node, ScalarNode) else None
                if key is not None and key in seen:
                    duplicates.append(YamlError(key_node.start_mark.line + 1,
                                                f"duplicate key {key!r} (each key may appear once); the first is used"))
                    continue
                seen.add(key)
                kept.append((key_node, value_node))
                stack.append(value_node)
            current.value = kept
        elif isinstance(current, SequenceNode):
            stack.extend(current.value)
    return YamlDoc(path=path, text=text, data=_to_python(node)), sorted(duplicates, key=lambda e: e.line)


def read_regular(path: Path, max_bytes: int = MAX_BYTES, root: Path | None = None) -> bytes:
    """The bytes of ``path`` if it is a regular file (inside ``root`` when given, links resolved) of at most
    ``max_bytes``; a :class:`YamlError` otherwise. A FIFO, device, socket or folder is never read: the file is
    opened without blocking and checked before the first byte is read."""
    if root is not None:
        real, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
        if not real.is_relative_to(base):
            raise YamlError(0, f"a link to {real}, outside the repository; only files inside it are read")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except IsADirectoryError:
        raise YamlError(0, "a folder, not a regular file; only regular files belong here") from None
    except OSError as exc:
        raise YamlError(0, f"cannot read file: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
                    else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                    else "a socket" if stat.S_ISSOCK(info.st_mode) else "a special file")
            raise YamlError(0, f"{kind}, not a regular file; only regular files belong here")
        if info.st_size > max_bytes:
            raise YamlError(
                0, f"file is {info.st_size:,} bytes, over the limit of {max_bytes:,} bytes ({max_bytes // 1024} KiB) for one file"
            )
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 16, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:  # grew while being read
            raise YamlError(0, f"file is over the limit of {max_bytes:,} bytes ({max_bytes // 1024} KiB) for one file")
        return b"".join(chunks)
    except OSError as exc:
        raise YamlError(0, f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_yaml(path: Path, max_bytes: int = MAX_BYTES, root: Path | None = None) -> YamlDoc:
    """Read and parse one file; every failure is a :class:`YamlError`, never another exception. With ``root``,
    a file (or a link) that leads outside ``root`` is refused."""
    return parse_text(read_text(path, max_bytes, root), path)


def read_text(path: Path, max_bytes: int = MAX_BYTES, root: Path | None = None) -> str:
    """The text of a catalog file (a regular file, within the size limit, UTF-8 without NUL bytes); every
    failure is a :class:`YamlError` with the line where it is, never another exception."""
    raw = read_regular(path, max_bytes, root)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(raw[: exc.start].count(b"\n") + 1, "file is not valid UTF-8 text") from None
    if "\x00" in text:
        raise YamlError(text[: text.index("\x00")].count("\n") + 1, "file holds a NUL byte; it is not text")
    return text


def read_or_error(path: Path, root: Path | None = None) -> YamlDoc | YamlError:
    try:
        return read_yaml(path, root=root)
    except YamlError as exc:
        return exc


def _parse_file(name: str, root: str | None = None) -> tuple[str, Any] | YamlError:
    """Worker side of :func:`read_many`: text and data travel back, the path stays with the caller."""
    parsed = read_or_error(Path(name), Path(root) if root else None)
    return parsed if isinstance(parsed, YamlError) else (parsed.text, parsed.data)


def read_many(paths: list[Path], root: Path | None = None) -> list[YamlDoc | YamlError]:
    """:func:`read_yaml` for many files, in order, errors returned rather than raised. Large catalogs are
    parsed by one worker process per CPU core (libyaml parsing is most of the time of validation)."""
    workers = min(os.cpu_count() or 1, 4)
    if len(paths) < PARALLEL_FROM or workers < 2:
        return [read_or_error(p, root) for p in paths]
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        chunk = max(1, len(paths) // (workers * 4))
        parsed = pool.map(_parse_file, [str(p) for p in paths], [str(root) if root else None] * len(paths),
                          chunksize=chunk)
        return [p if isinstance(p, YamlError) else YamlDoc(path, *p) for path, p in zip(paths, parsed)]
