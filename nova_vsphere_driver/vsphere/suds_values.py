"""Reading values as suds delivers them."""

from __future__ import annotations

from typing import Any


def items(value: Any) -> list:
    """The items of a suds ``ArrayOfX`` value (or of a plain list; [] for None).

    suds wraps arrays in an object whose one field holds the list, and may
    deliver an array of one item unwrapped.
    """
    if value is None:
        return []
    if isinstance(value, list):
        return value
    for _name, inner in value:  # suds objects iterate as (field, value) pairs
        if isinstance(inner, list):
            return inner
        if inner is not None:
            return [inner]
    return []
