"""Read one YAML file into a Pydantic model, turning every failure into ``path:line: field: message`` problems."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mlatlas.catalog import models
from mlatlas.catalog.problems import Problem, relative
from mlatlas.catalog.wording import message
from mlatlas.catalog.yamlio import YamlDoc, YamlError, parse_keeping_first, read_or_error, read_text

M = TypeVar("M", bound=BaseModel)

# Regular expressions of the models, explained in words a contributor understands.
_PATTERN_HELP = {
    models.SLUG_PATTERN: "lowercase letters and digits joined by single hyphens, e.g. 'proto-nets'",
    models.ARXIV_PATTERN: "an arXiv id such as '1703.03400' (no 'arXiv:' prefix, no version suffix)",
    models.DOI_PATTERN: "a DOI such as '10.1109/TPAMI.2021.3079209' (without 'https://doi.org/')",
    models.VENUE_PATTERN: "'<venue> <year>', e.g. 'ICML 2017' or 'arXiv 2019'",
    r"^[a-z][a-z0-9_]*$": "a Python package name: lowercase letters, digits and underscores",
}


@lru_cache(maxsize=1)
def _known_fields() -> frozenset[str]:
    """Every field name any catalog model accepts (for "did you mean" on unknown fields)."""
    from mlatlas import records  # records imports this module's siblings; import late to avoid a cycle

    names: set[str] = set()
    for module in (models, records):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel):
                for name, info in value.model_fields.items():
                    names.add(info.alias or name)
    return frozenset(names)


def _message(err: dict[str, Any]) -> str:
    return message(err, _PATTERN_HELP, _known_fields())


def _field(loc: tuple, doc: YamlDoc) -> tuple[str, ...]:
    """The part of a Pydantic error location a reader recognises (drops internal names like 'function-after[...]')."""
    kept: list[Any] = []
    for i, part in enumerate(loc):
        if doc.has((*kept, part)):
            kept.append(part)
        elif i == len(loc) - 1 and isinstance(part, str) and "[" not in part:
            kept.append(part)  # a missing or unknown key: still name it
        elif isinstance(part, str) and "[" in part:
            continue
        else:
            break
    return tuple(kept)


def validation_problems(exc: ValidationError, doc: YamlDoc, path_text: str) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = _field(tuple(err["loc"]), doc)
        problems.append(Problem(path_text, doc.line_of(loc), ".".join(str(p) for p in loc), _message(err)))
    return problems


def read_model(path: Path, model: type[M], root: Path, problems: list[Problem]) -> tuple[M | None, YamlDoc | None]:
    """The validated model and the parsed file; on failure None and the problems appended."""
    return model_from(read_or_error(path, root), path, model, root, problems)


def model_from(
    parsed: YamlDoc | YamlError, path: Path, model: type[M], root: Path, problems: list[Problem]
) -> tuple[M | None, YamlDoc | None]:
    """Like :func:`read_model` for a file already parsed (see :func:`mlatlas.catalog.yamlio.read_many`)."""
    if isinstance(parsed, YamlError) and parsed.message.startswith("duplicate key"):
        # a key written twice hides nothing else: keep its first value, report each repeat, and check the rest
        try:
            parsed, repeats = parse_keeping_first(read_text(path, root=root), path)
        except YamlError:
            pass  # another fault as well: reported as it is
        else:
            problems.extend(Problem(relative(path, root), e.line, "", e.message) for e in repeats)
    if isinstance(parsed, YamlError):
        problems.append(Problem(relative(path, root), parsed.line, "", parsed.message))
        return None, None
    doc = parsed
    if not isinstance(doc.data, dict):
        problems.append(Problem(relative(path, root), 1, "", "expected a mapping of 'field: value' lines at the top level"))
        return None, doc
    try:
        return model.model_validate(doc.data), doc
    except ValidationError as exc:
        problems.extend(validation_problems(exc, doc, relative(path, root)))
        return None, doc
