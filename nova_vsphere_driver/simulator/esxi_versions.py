"""What each ESXi release creates: the virtual hardware versions of its VMs.

A leaf module of vCenter facts (VMware KB 2007240, "Virtual machine hardware
versions"): every object module may use it.
"""

from __future__ import annotations

#: The ESXi version new hosts report when the inventory names none.
DEFAULT_ESXI_VERSION = "8.0.0"
#: (major, minor, update) of the first release -> its highest hardware version.
_NEWEST = ((6, 5, 0, 13), (6, 7, 0, 14), (6, 7, 2, 15), (7, 0, 0, 17), (7, 0, 1, 18),
           (7, 0, 2, 19), (8, 0, 0, 20), (8, 0, 2, 21))
#: The oldest hardware version ESXi 6.5 and later create VMs of.
OLDEST = 4


def _release(esxi_version: str) -> tuple[int, int, int]:
    parts = [int(p) for p in esxi_version.split(".")[:3] if p.isdigit()]
    if len(parts) < 2:
        raise ValueError(f"ESXi version {esxi_version!r} is not major.minor[.update]")
    major, minor, update = (parts + [0])[:3]
    return major, minor, update


def newest_hardware_version(esxi_version: str) -> int:
    """The highest hardware version a host of ``esxi_version`` creates VMs of."""
    release = _release(esxi_version)
    newest = [vmx for *first, vmx in _NEWEST if tuple(first) <= release]
    if not newest:
        raise ValueError(f"ESXi {esxi_version} is older than 6.5, which the simulator models")
    return newest[-1]


def hardware_versions(esxi_version: str) -> list[str]:
    """The keys ("vmx-04" ... "vmx-21") of the versions a host creates VMs of, oldest first."""
    return [f"vmx-{n:02d}" for n in range(OLDEST, newest_hardware_version(esxi_version) + 1)]


def default_hardware_version(esxi_version: str) -> str:
    """What a VM created without ``version`` gets: the host's newest."""
    return f"vmx-{newest_hardware_version(esxi_version):02d}"
