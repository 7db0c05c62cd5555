"""Just enough of the VMDK formats to tell images apart and read a disk's capacity.

A sparse extent (hosted monolithic sparse, or the stream-optimized kind
vCenter exports) starts with a 512-byte header: magic ``KDMV``, version,
flags (bit 16: compressed grains, bit 17: markers -- both set in a stream),
capacity in sectors. A VMFS disk's ``.vmdk`` file is a text descriptor whose
extent lines (``RW <sectors> VMFS "x-flat.vmdk"``) add up to its capacity.
(VMware, "Virtual Disk Format 5.0".)
"""

from __future__ import annotations

import dataclasses
import re
import struct

SECTOR = 512
_MAGIC = b"KDMV"
_HEADER = struct.Struct("<4sIIQQ")  # magic, version, flags, capacity, grain size
_COMPRESSED = 0x10000
_MARKERS = 0x20000
_EXTENT = re.compile(rb"^\s*(?:RW|RDONLY|NOACCESS)\s+(\d+)\s+\S+", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class SparseHeader:
    version: int
    flags: int
    capacity_sectors: int
    grain_sectors: int

    @property
    def stream_optimized(self) -> bool:
        return bool(self.flags & _COMPRESSED and self.flags & _MARKERS)

    @property
    def capacity_kb(self) -> int:
        return (self.capacity_sectors + 1) // 2


def sparse_header(first_sector: bytes) -> SparseHeader | None:
    """The sparse extent header ``first_sector`` holds, or None (flat data, a descriptor).

    Only a plausible header counts (known version, power-of-two grain size),
    not any data that happens to start with the magic.
    """
    if len(first_sector) < _HEADER.size:
        return None
    magic, version, flags, capacity, grain = _HEADER.unpack_from(first_sector)
    if magic != _MAGIC or version not in (1, 2, 3) or grain < 8 or grain & (grain - 1) \
            or capacity <= 0:
        return None
    return SparseHeader(version=version, flags=flags, capacity_sectors=capacity,
                        grain_sectors=grain)


def descriptor_capacity_kb(text: bytes) -> int | None:
    """The capacity (KB) a disk descriptor's extents add up to; None if it is no descriptor."""
    if not text.lstrip().startswith(b"# Disk DescriptorFile"):
        return None
    sectors = sum(int(m.group(1)) for m in _EXTENT.finditer(text))
    if sectors <= 0:
        return None
    return (sectors + 1) // 2
