"""What is left of an entry that failed its model: the fields that pass; a failing one takes its default or None.

The whole-catalog checks (an arXiv id or link another entry already uses, a reproduction package that does not
exist, a date in the future ...) run on these too, so a file's field errors and its cross-file problems are
reported in the same run instead of one after the other. A partial entry is only ever checked, never rendered.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError, create_model

M = TypeVar("M", bound=BaseModel)


@lru_cache(maxsize=None)
def _lenient(model: type[M]) -> type[M]:
    """``model`` with every required field optional (None when absent; the others keep their defaults); its
    validators still apply to what is given."""
    fields = {name: (info.annotation | None, None) for name, info in model.model_fields.items() if info.is_required()}
    return create_model(f"Partial{model.__name__}", __base__=model, **fields)


def partial(model: type[M], data: dict[str, Any]) -> M | None:
    """An instance of ``model`` holding the fields of ``data`` that pass (converted as the model converts them);
    a field that fails takes its default, or None when it has none. None when no field can be vouched for."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    if any(not err["loc"] for err in errors):  # a rule over the whole entry failed: no field is known good
        return None
    failed = {err["loc"][0] for err in errors}
    names = {info.alias or name: name for name, info in model.model_fields.items()}
    kept = {key: value for key, value in data.items() if key not in failed and names.get(key, key) not in failed}
    try:
        return _lenient(model).model_validate(kept)
    except ValidationError:
        return None
