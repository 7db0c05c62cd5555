"""Which ComputeDriver operations VSphereDriver supports, read from the code.

A second table lists the driver's capabilities (what Nova's API and
scheduler ask of a compute node: image types, volume and interface
features), as the driver declares them.

``python tools/driver_support.py`` prints the reStructuredText tables that
README.rst carries between its ``driver-support`` markers; ``--check``
exits 1 when README.rst differs (a test runs it), ``--write`` updates it.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import sys
import textwrap

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.rst")
BEGIN = ".. driver-support-begin"
END = ".. driver-support-end"


def _raises_not_implemented(func) -> str | None:
    """The message when the function's body does nothing but refuse."""
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None
    body = ast.parse(source).body[0].body
    statements = [s for s in body if not (isinstance(s, ast.Expr)
                                          and isinstance(s.value, ast.Constant))]
    if len(statements) != 1 or not isinstance(statements[0], ast.Raise):
        return None
    exc = statements[0].exc
    call = exc if isinstance(exc, ast.Call) else None
    name = call.func if call is not None else exc
    if not (isinstance(name, ast.Name) and name.id == "NotImplementedError"):
        return None
    if call is not None and call.args:
        try:
            return str(eval(compile(ast.Expression(call.args[0]), "<message>", "eval"),
                            func.__globals__))
        except Exception:  # a message built from call arguments: show its code
            return ast.unparse(call.args[0])
    return ""


#: Where Nova itself does the job when the driver does not.
NOVA_FALLBACKS = {
    "rebuild": "yes, by Nova: destroy and spawn on the same node",
    "plug_vifs": "not needed: NICs are wired to port groups at spawn",
    "poll_rebooting_instances": "not needed: reboots are synchronous",
}


def support_table() -> list[tuple[str, str]]:
    from nova.virt import driver as nova_driver

    from nova_vsphere_driver.driver import VSphereDriver

    rows = []
    for name, base in sorted(vars(nova_driver.ComputeDriver).items()):
        if name.startswith("_") or not inspect.isfunction(base):
            continue
        ours = vars(VSphereDriver).get(name)
        if ours is not None:
            refused = _raises_not_implemented(ours)
            if refused is None:
                status = "yes"
            else:
                status = "no: " + refused if refused else "no"
        elif name in NOVA_FALLBACKS:
            status = NOVA_FALLBACKS[name]
        elif _raises_not_implemented(base) is not None:
            status = "no (not implemented)"
        else:
            status = "Nova's default"
        rows.append((name, status))
    return rows


def capability_table() -> list[tuple[str, str]]:
    from nova_vsphere_driver.driver import VSphereDriver

    return [(name, "yes" if value is True else "no" if value is False else repr(value))
            for name, value in sorted(VSphereDriver.capabilities.items())]


def _table(rows: list[tuple[str, str]], first: str, second: str) -> list[str]:
    width = max(len(n) for n, _ in rows) + 4
    swidth = max(max(len(s) for _, s in rows), len(second))
    rule = "=" * width + " " + "=" * swidth
    lines = [rule, f"{first:<{width}} {second}", rule]
    lines += [f"{'``' + n + '``':<{width}} {s}" for n, s in rows]
    lines.append(rule)
    return lines


def render() -> str:
    lines = _table(support_table(), "operation", "supported")
    lines += [""] + _table(capability_table(), "capability", "value")
    return "\n".join(lines)


def _readme_table() -> str | None:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    table = render()
    if args.write:
        with open(README, encoding="utf-8") as f:
            text = f.read()
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        with open(README, "w", encoding="utf-8") as f:
            f.write(f"{head}{BEGIN}\n\n{table}\n\n{END}{tail}")
        return 0
    if args.check:
        current = _readme_table()
        if current is None or current.strip() != table.strip():
            print("README.rst's operation table is stale: run "
                  "python tools/driver_support.py --write", file=sys.stderr)
            return 1
        return 0
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
