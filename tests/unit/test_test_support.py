"""The test suite's own shared machinery (tests/conftest.py)."""

from __future__ import annotations

from tests.conftest import _DescribedModels


class _Model:
    """Stands for a parsed WSDL model (any object the cache can drop)."""


def test_a_model_is_described_once():
    models = _DescribedModels()
    model = _Model()
    assert models.first_time(model)
    assert not models.first_time(model)


def test_a_new_model_where_a_collected_one_lived_is_described():
    """CPython hands a collected object's id() (its address) to the next object
    allocated there: known by id alone, a new model was taken for the old one
    and never described."""
    models = _DescribedModels()
    old = _Model()
    assert models.first_time(old)
    old_id = id(old)
    del old
    new = _Model()  # most often at the old one's address, so with its id
    assert models.first_time(new), id(new) == old_id
    assert not models.first_time(new)
