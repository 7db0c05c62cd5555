"""nova-vsphere-demo: run its main() in-process and read what it says."""

from __future__ import annotations

import io
import struct
import zlib

import pytest

from nova_vsphere_driver.cmd import demo
from nova_vsphere_driver.testing import nova_env


def read_png(path) -> tuple[int, int, bytes]:
    """(width, height, raw scanlines) of an 8-bit RGB PNG, checking its structure."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2)
    assert b"IEND" in chunks
    return width, height, zlib.decompress(chunks[b"IDAT"])


def run(argv) -> tuple[int, str]:
    out = io.StringIO()
    code = demo.main(argv, stream=out)
    return code, out.getvalue()


def test_demo_end_to_end(nova_installed, tmp_path):
    plot = tmp_path / "load.png"
    code, text = run(["--servers", "3", "--plot", str(plot)])
    assert code == 0, text
    lines = text.splitlines()
    assert "[1/8] Starting the vCenter simulator and Nova" in text
    assert "nova-compute 'compute1' reports 2 compute nodes, one per cluster" in text
    # Each cluster as Nova sees it, from placement.
    for cluster in ("cluster-a", "cluster-b"):
        assert any(line.startswith(f"  {cluster}: Nova node domain-c") for line in lines)
    header = ["resource", "total", "used", "free", "max_unit", "ratio"]
    assert sum(line.split() == header for line in lines) == 4  # 2 clusters, twice
    assert any(line.split()[:2] == ["MEMORY_MB", "1048576"] for line in lines)
    # One host per cluster in maintenance while the servers boot.
    assert "cluster-a MEMORY_MB total in placement 1048576 -> 786432" in text
    assert "cluster-b MEMORY_MB total in placement 1441792 -> 917504" in text
    # Every server ACTIVE, with its ESXi host; the web group is a DRS rule.
    for name in ("web-1", "web-2", "web-3", "app-1", "app-2", "app-3", "db-1", "db-2"):
        assert any(line.split()[:2] == [name, "ACTIVE"] for line in lines), name
    assert "anti-affinity, must, members web-1, web-2, web-3" in text
    assert "one per ESXi host" in text
    # The balancing pass: loads before and after, moves with their reasons.
    assert text.count("load before") == 2 and text.count("load after") == 2
    assert "esx-a1 and esx-b1 are back" in text
    moves = [line for line in lines if line.strip().startswith("move ")]
    whys = [line for line in lines if line.strip().startswith("why: ")]
    assert len(moves) == len(whys)
    assert moves, "esx-a1 and esx-b1 came back empty: the pass should move load onto them"
    assert any(m.split("[")[0].rstrip().endswith(("-> esx-a1", "-> esx-b1")) for m in moves)
    assert "11 servers" not in text and "8 servers deleted" in text
    assert lines[-1].startswith("Demo complete in ")
    width, height, raw = read_png(plot)
    assert width > 200 and height > 200
    assert len(raw) == height * (1 + 3 * width)
    assert f"wrote {plot}" in text


def test_demo_failure_is_reported_with_a_nonzero_exit(nova_installed, monkeypatch):
    monkeypatch.setattr(demo, "MAINTENANCE_HOSTS", ("esx-z9",))
    code, text = run(["--servers", "0"])
    assert code == 1
    assert "FAILED: StackError: vCenter has no host esx-z9" in text
    assert "Demo complete" not in text


def test_demo_without_nova_says_how_to_install(monkeypatch):
    monkeypatch.setattr(nova_env, "missing_modules", lambda: ["nova", "wsgi-intercept"])
    code, text = run([])
    assert code == 2
    assert "missing: nova, wsgi-intercept" in text
    assert "pip install 'nova-vsphere-driver[nova]'" in text


def test_demo_refuses_a_plot_path_it_cannot_write(capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main(["--plot", "/nonexistent-dir/load.png"])
    assert exc.value.code == 2
    assert "no such directory /nonexistent-dir" in capsys.readouterr().err
