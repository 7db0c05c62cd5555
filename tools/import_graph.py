"""The shape of nova_vsphere_driver's imports, counted from the source.

``python tools/import_graph.py`` prints three counts (``--verbose``: every
offending import, cycle and access):

* **forbidden imports**: imports that go against the layering of the
  README's "Code layout" (a layer importing one above it, or a sibling it
  must not know: ``vsphere`` -> ``drs``, ``ops`` -> ``driver``, anything ->
  the simulator). Every import counts, at module level or inside a
  function, ``TYPE_CHECKING`` ones too.
* **import cycles**: strongly connected components of the module graph
  (every import, as above) outside the simulator, and the modules in them.
* **private accesses into the driver**: ``driver._x`` attribute reads and
  calls in ``ops/`` on the object handed down from VSphereDriver (whatever
  the parameter is called), with the number of distinct attributes and of
  ops modules making them.

``--check`` exits 1 when any of the three is not zero;
``tests/unit/test_code_layout.py`` checks the same. Nothing is imported: the
source is parsed. The layers are the README's "Code layout"; the names the
modules had before that layout (``cluster``, ``cluster_drs``) are kept so
that older commits can be measured too.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "nova_vsphere_driver"

#: Layers, by module-name prefix (longest match wins). A module in no layer
#: (none today) is reported as such.
LAYERS = {
    PACKAGE: "base",
    f"{PACKAGE}.conf": "base",
    f"{PACKAGE}.extra_specs": "base",
    f"{PACKAGE}.drs": "drs",
    f"{PACKAGE}.vsphere": "vsphere",
    f"{PACKAGE}.simulator": "simulator",
    # The DRS runtime: claims, pass locks, ClusterState -> drs snapshot, waves
    # of vMotions (named cluster_drs before it became a package).
    f"{PACKAGE}.cluster_drs": "drs_runtime",
    f"{PACKAGE}.drs_runtime": "drs_runtime",
    # Shared clients and pure instance policy handed to the operations;
    # cluster.py held provider inventory and datastore choice before the split.
    f"{PACKAGE}.cluster": "services",
    f"{PACKAGE}.services": "services",
    f"{PACKAGE}.policy": "services",
    f"{PACKAGE}.provider_inventory": "services",
    f"{PACKAGE}.datastore_selection": "services",
    f"{PACKAGE}.ops": "ops",
    f"{PACKAGE}.driver": "driver",
    f"{PACKAGE}.scheduler_filters": "driver",
    f"{PACKAGE}.testing": "testing",
    f"{PACKAGE}.cmd": "cmd",
}

#: What each layer may import (itself included unless said otherwise).
MAY_IMPORT = {
    "base": {"base"},
    "drs": {"base", "drs"},
    "vsphere": {"base", "vsphere"},
    "simulator": {"base", "simulator"},
    "drs_runtime": {"base", "drs", "vsphere", "drs_runtime"},
    "services": {"base", "drs", "vsphere", "drs_runtime", "services"},
    "ops": {"base", "drs", "vsphere", "drs_runtime", "services", "ops"},
    "driver": {"base", "drs", "vsphere", "drs_runtime", "services", "ops", "driver"},
    "testing": {"base", "drs", "vsphere", "drs_runtime", "services", "ops", "driver",
                "simulator", "testing"},
    "cmd": {"base", "drs", "vsphere", "drs_runtime", "services", "ops", "driver",
            "simulator", "testing", "cmd"},
}

#: Names the driver object goes by in ops/ (parameters and attributes).
DRIVER_NAMES = {"drv", "driver", "_driver"}


def modules() -> dict[str, str]:
    """Module name -> file path, for every module of the package."""
    found = {}
    top = os.path.join(ROOT, PACKAGE)
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
            found[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str, path: str, known: dict[str, str]) -> Iterator[tuple[str, int]]:
    """(imported module of the package, line) for every import in the file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    is_package = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, is_package, node)
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                # "from pkg import module" imports the module; else the name's module.
                yield (sub if sub in known else source), node.lineno


def layer(module: str) -> str | None:
    best = None
    for prefix, name in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and \
                (best is None or len(prefix) > len(best[0])):
            best = (prefix, name)
    return best[1] if best else None


def graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    known = modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    where = []
    for name, path in known.items():
        for target, line in imports(name, path, known):
            if target != name:
                edges[name].add(target)
                where.append((name, line, target))
    return edges, where


def forbidden(where: list[tuple[str, int, str]]) -> list[str]:
    out = []
    for source, line, target in where:
        src, dst = layer(source), layer(target)
        if src is None or dst is None or dst not in MAY_IMPORT[src]:
            out.append(f"{source}:{line} ({src}) imports {target} ({dst})")
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), simulator aside."""
    nodes = [m for m in edges if layer(m) != "simulator"]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        # Iterative Tarjan: the graph is small, but recursion limits are not ours.
        work = [(node, iter(sorted(edges.get(node, ()))))]
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in edges or layer(child) == "simulator":
                    continue
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[current] = min(low[current], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[current])
            if low[current] == index[current]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == current:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return sorted(found)


def driver_accesses() -> list[tuple[str, int, str]]:
    """(ops module, line, attribute) of every ``<driver>._attribute`` in ops/."""
    out = []
    for name, path in modules().items():
        if layer(name) != "ops":
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                continue
            owner = node.value
            owner_name = owner.id if isinstance(owner, ast.Name) else \
                owner.attr if isinstance(owner, ast.Attribute) else None
            if owner_name in DRIVER_NAMES:
                out.append((name, node.lineno, node.attr))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true", help="list every finding")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless all three counts are zero")
    args = parser.parse_args(argv)
    edges, where = graph()
    bad = forbidden(where)
    loops = cycles(edges)
    accesses = driver_accesses()
    ops_modules = [m for m in modules() if layer(m) == "ops" and not m.endswith(".ops")]
    print(f"modules: {len(edges)}; imports between them: {len(where)}")
    print(f"forbidden imports (upward or sideways): {len(bad)}")
    print(f"import cycles outside the simulator: {len(loops)} "
          f"({sum(len(c) for c in loops)} modules)")
    print(f"private accesses into the driver from ops/: {len(accesses)} to "
          f"{len({a for _, _, a in accesses})} attributes from "
          f"{len({m for m, _, _ in accesses})} of {len(ops_modules)} ops modules")
    if args.verbose:
        for line in bad:
            print(f"  forbidden: {line}")
        for loop in loops:
            print(f"  cycle: {' <-> '.join(loop)}")
        for module, line, attr in accesses:
            print(f"  access: {module}:{line} ._{attr.lstrip('_')}")
    if args.check and (bad or loops or accesses):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
