"""The README's "Code layout", checked: no forbidden import, no cycle, no reach into the driver."""

from __future__ import annotations

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _import_graph():
    spec = importlib.util.spec_from_file_location(
        "import_graph", os.path.join(ROOT, "tools", "import_graph.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_layer_imports_one_above_it_or_a_sibling_it_must_not_know():
    graph = _import_graph()
    _, where = graph.graph()
    assert graph.forbidden(where) == []


def test_every_module_belongs_to_a_layer():
    graph = _import_graph()
    assert [m for m in graph.modules() if graph.layer(m) is None] == []


def test_no_import_cycle_outside_the_simulator():
    graph = _import_graph()
    edges, _ = graph.graph()
    # drs/placement <-> drs/room is broken on the DRS library's own branch
    # (the drs/ part of the same issue); nothing else may form a cycle.
    pending = {"nova_vsphere_driver.drs.placement", "nova_vsphere_driver.drs.room"}
    assert [c for c in graph.cycles(edges) if set(c) != pending] == []


def test_operations_use_no_private_attribute_of_the_driver():
    assert _import_graph().driver_accesses() == []


def test_the_tool_finds_what_it_counts(tmp_path, monkeypatch):
    """A module importing upward, a cycle and a private access are each reported."""
    graph = _import_graph()
    package = tmp_path / "nova_vsphere_driver"
    (package / "ops").mkdir(parents=True)
    (package / "vsphere").mkdir()
    (package / "__init__.py").write_text("")
    (package / "driver.py").write_text("from nova_vsphere_driver.ops import a\n")
    (package / "ops" / "__init__.py").write_text("")
    (package / "ops" / "a.py").write_text(
        "def f(drv):\n    from nova_vsphere_driver import driver\n    return drv._session\n")
    (package / "vsphere" / "__init__.py").write_text("")
    (package / "vsphere" / "b.py").write_text("from nova_vsphere_driver import drs\n")
    (package / "drs.py").write_text("")
    monkeypatch.setattr(graph, "ROOT", str(tmp_path))
    edges, where = graph.graph()
    bad = graph.forbidden(where)
    assert any("ops.a:2 (ops) imports nova_vsphere_driver.driver" in b for b in bad)
    assert any("vsphere.b:1 (vsphere) imports nova_vsphere_driver.drs" in b for b in bad)
    assert graph.cycles(edges) == [["nova_vsphere_driver.driver", "nova_vsphere_driver.ops.a"]]
    assert graph.driver_accesses() == [("nova_vsphere_driver.ops.a", 3, "_session")]
