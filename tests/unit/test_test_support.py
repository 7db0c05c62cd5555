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


def test_a_new_model_with_a_known_id_is_described():
    """CPython hands a collected object's id() (its address) to the next object
    allocated there: known by id alone, a new model was taken for the old one
    and never described. Here every model gets the same key, as if so."""
    models = _DescribedModels(key=lambda _model: 1)
    old, new = _Model(), _Model()
    assert models.first_time(old)
    assert models.first_time(new)
    assert not models.first_time(new)
    del old  # its entry is gone already: the newer one stays known
    assert not models.first_time(new)
