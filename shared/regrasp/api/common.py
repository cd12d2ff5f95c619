"""What every schema module of the API shares: the base classes, UTC times, the error body,
and `fields_of`, which turns a library dataclass into the fields of its public schema.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

__all__ = [
    "ErrorPublic",
    "GraspTuple",
    "Public",
    "UtcDatetime",
    "fields_of",
]

#: A grasp `(x, y, theta, opening, jaw)` in pixels and degrees.
GraspTuple = tuple[float, float, float, float, float]


def _utc(value: datetime) -> datetime:
    """Times are UTC; SQLite hands them back naive, so say so on the way out."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


#: A timezone-aware UTC time (naive values are taken as UTC).
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class Public(BaseModel):
    """Base of the answers read from the library's objects (`model_validate(obj)`: rows,
    dataclasses, anything with the attributes)."""

    model_config = ConfigDict(from_attributes=True)


class ErrorPublic(BaseModel):
    """Every error response (`regrasp.platform.web.error_body`): one sentence meant for a person."""

    error: str
    detail: str


@functools.cache
def fields_of(
    source: type, *, omit: Collection[str] = (), base: type[BaseModel] = Public
) -> type[BaseModel]:
    """A pydantic model with the fields of dataclass `source`: its names, types and
    defaults, in its order (less `omit`), on `base`.

    A response schema subclasses it, so the library's dataclass is the one list of what
    the answer holds: a field added there reaches the API without a copy to keep in step.
    The subclass re-declares only what the contract says more precisely (a description,
    a UTC time, a list for a tuple) or differently (a nested public schema); pydantic keeps
    a re-declared field in the dataclass's position. The route answers with
    `Schema.model_validate(obj)` (`from_attributes`), properties of `obj` included.
    """
    if not dataclasses.is_dataclass(source):
        raise TypeError(f"{source!r} is not a dataclass")
    hints = typing.get_type_hints(source)
    spec: dict[str, Any] = {}
    for f in dataclasses.fields(source):
        if f.name in omit:
            continue
        if f.default is not dataclasses.MISSING:
            spec[f.name] = (hints[f.name], f.default)
        elif f.default_factory is not dataclasses.MISSING:
            spec[f.name] = (hints[f.name], Field(default_factory=f.default_factory))
        else:
            spec[f.name] = (hints[f.name], ...)
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{source.__name__}Fields", __base__=base, __module__=__name__, **spec
    )
