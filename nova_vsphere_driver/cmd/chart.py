"""Per-host load as terminal bars, and as a PNG chart drawn with matplotlib.

The PNG needs the ``[plot]`` extra (matplotlib; ``[nova]`` includes it):
:func:`plotting_available` says whether it is there, so that callers refuse
``--plot`` up front instead of failing after the work is done.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
from collections.abc import Sequence

_EIGHTHS = " ▏▎▍▌▋▊▉"
#: What to install for PNG charts.
PLOT_HINT = "pip install 'nova-vsphere-driver[plot]'"

#: Colours of the bars before and after the pass, and of hosts that are not usable.
BEFORE_COLOR = "#aaaaaa"
AFTER_COLOR = "#1f77b4"
UNUSABLE_COLOR = "#d6604d"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar ``fraction`` (0..1, clipped) of ``width`` cells, in eighths."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[rest] if rest else "")
    return text.ljust(width)


@dataclasses.dataclass(frozen=True)
class HostBar:
    """One host's row: DRS load before and after (None: not usable, e.g. maintenance)."""

    name: str
    before: float | None
    after: float | None


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    hosts: tuple[HostBar, ...]


def plotting_available() -> bool:
    """Whether matplotlib (the ``[plot]`` extra) is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def _draw_panel(ax, panel: Panel) -> None:
    """Grouped horizontal bars, one pair per host; hosts top to bottom in panel order."""
    height = 0.38
    names = [h.name for h in panel.hosts]
    rows = range(len(names))
    for offset, color, values in (
            (-height / 2, BEFORE_COLOR, [h.before for h in panel.hosts]),
            (height / 2, AFTER_COLOR, [h.after for h in panel.hosts])):
        ys = [r + offset for r in rows]
        ax.barh(ys, [v or 0.0 for v in values], height=height, color=color)
        for y, value in zip(ys, values, strict=True):
            if value is None:
                # Not usable (maintenance, disconnected): no load to show.
                ax.barh(y, 0.06, height=height, color="none", edgecolor=UNUSABLE_COLOR,
                        hatch="///")
            else:
                ax.annotate(f"{value:.2f}", (value, y), xytext=(3, 0),
                            textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(list(rows), names)
    ax.invert_yaxis()
    top = max([1.0] + [v for h in panel.hosts for v in (h.before, h.after) if v is not None])
    ax.set_xlim(0, top * 1.15)
    ax.set_xlabel("DRS load (demand / capacity)")
    ax.set_ylabel("ESXi host")
    ax.set_title(panel.title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def load_chart_png(panels: Sequence[Panel], title: str) -> bytes:
    """The chart as an 8-bit RGB PNG: one panel (axes) per cluster, stacked."""
    # matplotlib's object API with the Agg canvas: no pyplot, no global figure
    # state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from PIL import Image

    rows = sum(max(len(p.hosts), 1) for p in panels)
    fig = Figure(figsize=(8, 1.5 + 0.45 * rows + 0.9 * len(panels)), dpi=100)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        height_ratios=[max(len(p.hosts), 1) + 2 for p in panels])
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        _draw_panel(ax, panel)
    fig.suptitle(title)
    fig.legend(handles=[Patch(color=BEFORE_COLOR, label="before the pass"),
                        Patch(color=AFTER_COLOR, label="after the pass"),
                        Patch(facecolor="none", edgecolor=UNUSABLE_COLOR, hatch="///",
                              label="not usable (maintenance, disconnected)")],
               loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=3, fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    canvas.draw()
    # Agg renders RGBA; the chart has no transparency, so the PNG is plain RGB.
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(),
                             "raw", "RGBA", 0, 1).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_load_chart(path: str, panels: Sequence[Panel], title: str) -> None:
    data = load_chart_png(panels, title)
    with open(path, "wb") as f:
        f.write(data)
