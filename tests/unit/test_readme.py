"""README.rst stays true to the code."""

from __future__ import annotations

import os
import re
import runpy

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_operation_table_matches_the_driver():
    tool = runpy.run_path(os.path.join(ROOT, "tools", "driver_support.py"))
    assert tool["main"](["--check"]) == 0, "run: python tools/driver_support.py --write"


def test_quick_start_names_exactly_the_two_commands_ci_and_tests_run():
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
        text = f.read()
    quick = text.split("Quick start", 1)[1].split("Installing next to", 1)[0]
    commands = [line.strip() for line in quick.splitlines() if line.startswith("    ")]
    assert len(commands) == 2
    assert commands[0].endswith("nova-vsphere-demo")
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    test_command = commands[1].split("&&")[-1].strip().replace(".venv/bin/", "")
    assert test_command in ci


def _section(text: str, title: str) -> str:
    body = text.split(f"\n{title}\n{'=' * len(title)}\n", 1)[1]
    # Up to the next top-level title (a line of '=' under a line of text).
    lines = body.splitlines()
    for i in range(1, len(lines)):
        if lines[i] and set(lines[i]) == {"="} and lines[i - 1].strip() \
                and len(lines[i]) == len(lines[i - 1]):
            return "\n".join(lines[:i - 1])
    return body


def test_moving_from_the_in_tree_driver_covers_every_in_tree_option():
    """Each [vmware] option of Nova's in-tree driver has its entry, and the [vsphere]
    options the section names exist."""
    vmware = pytest.importorskip("nova.conf.vmware")
    from nova_vsphere_driver import conf

    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
        section = _section(f.read(), "Moving from the in-tree driver")
    entries = [line for line in section.splitlines() if line.startswith("``[vmware]")]
    named = set(re.findall(r"``(?:\[vmware\] )?(\w+)``", "\n".join(entries)))
    in_tree = {opt.name for opt in vmware.ALL_VMWARE_OPTS}
    assert in_tree - named == set()
    ours = {opt.name for opt in conf.vsphere_opts}
    mentioned = set(re.findall(r"``\[vsphere\]\s+(\w+)", section)) | \
        set(re.findall(r"``\[vsphere\]``\s+``(\w+)``", section))
    assert mentioned and mentioned - ours == set()
