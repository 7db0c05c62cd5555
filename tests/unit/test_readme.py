"""README.rst stays true to the code."""

from __future__ import annotations

import os
import runpy

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
