"""Turning per-host rejection reasons into one readable sentence."""

from __future__ import annotations

import re
from collections.abc import Mapping

_MEMORY = re.compile(r"^memory: (\d+) MB free")


def summarize_rejections(rejections: Mapping[str, str], max_hosts: int = 3) -> str:
    """Group hosts by why they were rejected, e.g.

    ``"4 hosts short of memory (most free 4096 MB): esx-1, esx-2, esx-3, ...;
    1 host in maintenance mode: esx-9"``
    """
    groups: dict[str, list[str]] = {}
    best_free: dict[str, int] = {}
    for host in sorted(rejections):
        reason = rejections[host]
        m = _MEMORY.match(reason)
        if m:
            key = "short of memory"
            best_free[key] = max(best_free.get(key, 0), int(m.group(1)))
        elif reason.startswith("vCPUs:"):
            key = "short of vCPUs"
        else:
            key = reason
        groups.setdefault(key, []).append(host)
    parts = []
    for key, hosts in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        label = f"{len(hosts)} host{'s' if len(hosts) != 1 else ''} {_phrase(key)}"
        if key in best_free:
            label += f" (most free {best_free[key]} MB)"
        shown = ", ".join(hosts[:max_hosts]) + (", ..." if len(hosts) > max_hosts else "")
        parts.append(f"{label}: {shown}")
    return "; ".join(parts) if parts else "no hosts"


def _phrase(key: str) -> str:
    """Host states and rule/capacity reasons read as they are; others get a label."""
    if key == "disconnected" or key.startswith(
            ("short of", "in ", "entering", "being", "would", "no ")):
        return key
    return f"rejected ({key})"
