"""nova-vsphere-demo's charts: terminal bars, and the PNG drawn with matplotlib."""

from __future__ import annotations

import struct

import pytest

from nova_vsphere_driver.cmd import chart


def test_bars_fill_eighths_of_cells_and_clip():
    assert chart.bar(0.5, 4) == "██  "
    assert chart.bar(1 / 32, 4) == "▏   "
    assert chart.bar(2.0, 3) == "███"
    assert chart.bar(-1.0, 3) == "   "


def test_the_png_has_a_panel_per_cluster_as_an_rgb_image(tmp_path):
    pytest.importorskip("matplotlib", reason="the PNG chart needs the [plot] extra")
    panels = [chart.Panel(f"cluster-{c}", (chart.HostBar(f"esx-{c}1", None, 0.4),
                                           chart.HostBar(f"esx-{c}2", 0.9, 0.5)))
              for c in "ab"]
    path = tmp_path / "load.png"
    chart.write_load_chart(str(path), panels, "DRS balancing pass")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    assert (depth, color) == (8, 2)  # 8-bit RGB
    assert width >= 600 and height >= 400
    one = tmp_path / "one.png"
    chart.write_load_chart(str(one), panels[:1], "DRS balancing pass")
    assert struct.unpack(">I", one.read_bytes()[20:24])[0] < height  # fewer panels, shorter
