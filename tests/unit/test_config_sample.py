"""The committed sample configuration matches the options in conf.py."""

from __future__ import annotations

import difflib
import io
import pathlib

from oslo_config import cfg, generator

from nova_vsphere_driver import conf

ROOT = pathlib.Path(__file__).resolve().parents[2]
ETC = ROOT / "etc" / "nova-vsphere-driver"
GENERATOR_CONF = ETC / "nova-vsphere-driver-config-generator.conf"
SAMPLE = ETC / "nova-vsphere-driver.conf.sample"


def _generator_conf() -> cfg.ConfigOpts:
    """oslo-config-generator's options, as ``tox -e genconfig`` passes them."""
    gen_conf = cfg.ConfigOpts()
    generator.register_cli_opts(gen_conf)
    gen_conf(["--config-file", str(GENERATOR_CONF)], project="oslo-config-generator",
             default_config_files=[], default_config_dirs=[])
    return gen_conf


def _generate() -> str:
    """What ``tox -e genconfig`` would write, without writing it."""
    gen_conf = _generator_conf()
    out = io.StringIO()
    generator.generate(gen_conf, output_file=out)
    return out.getvalue()


def test_generator_writes_the_committed_sample():
    gen_conf = _generator_conf()
    # tox -e genconfig runs from the repository root.
    assert (ROOT / gen_conf.output_file).resolve() == SAMPLE
    assert gen_conf.namespace == ["nova_vsphere_driver"]


def test_sample_is_up_to_date():
    assert SAMPLE.exists(), f"{SAMPLE.relative_to(ROOT)} is missing: run tox -e genconfig"
    expected = _generate()
    committed = SAMPLE.read_text(encoding="utf-8")
    if committed != expected:
        diff = "".join(difflib.unified_diff(
            committed.splitlines(keepends=True), expected.splitlines(keepends=True),
            fromfile=f"{SAMPLE.name} (committed)", tofile=f"{SAMPLE.name} (generated)", n=1))
        raise AssertionError(
            f"{SAMPLE.relative_to(ROOT)} is stale: run tox -e genconfig and commit the "
            f"result.\n{diff}")


def test_sample_documents_every_option():
    committed = SAMPLE.read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    current = None
    for line in committed.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    for group, opts in conf.list_opts():
        assert group.name in sections, f"[{group.name}] missing from the sample"
        for opt in opts:
            assert f"\n#{opt.dest} =" in "\n" + sections[group.name], \
                f"[{group.name}] {opt.dest} missing from the sample: run tox -e genconfig"
