"""Hypothesis strategies for JSON values, shared by the tests of friendsim's JSON encoders."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(*, int_bits: int = 63, max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """Nested JSON values: null, booleans, integers within ``±2**int_bits``, finite floats,
    text (no lone surrogates), lists and objects."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**int_bits), max_value=2**int_bits)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=max_leaves,
    )


def leaves(value: Any) -> list[Any]:
    """The scalars inside a JSON value."""
    if type(value) is list:
        return [x for v in value for x in leaves(v)]
    if type(value) is dict:
        return [x for v in value.values() for x in leaves(v)]
    return [value]


def holds_float(value: Any) -> bool:
    """Whether a float is among the scalars of ``value``."""
    return any(type(v) is float for v in leaves(value))
