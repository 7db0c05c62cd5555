"""A writer of hosted monolithic sparse VMDKs (``vmware_disktype=sparse`` images), for tests.

Independent of the simulator's reader: it lays the file out as VMware's
"Virtual Disk Format 5.0" describes a hosted sparse extent -- header,
embedded descriptor, grain directory, grain tables, then uncompressed
grains -- writing only the grains that hold data.
"""

from __future__ import annotations

import struct

SECTOR = 512
GRAIN_SECTORS = 128
GTES = 512
_HEADER = struct.Struct("<4sIIQQQQIQQQB4sH")


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % SECTOR)


def monolithic_sparse(capacity_bytes: int, content: bytes) -> bytes:
    """A hosted sparse VMDK of ``capacity_bytes`` whose data starts with ``content``."""
    capacity = capacity_bytes // SECTOR
    grain_bytes = GRAIN_SECTORS * SECTOR
    tables = -(-capacity // (GRAIN_SECTORS * GTES))
    descriptor = _pad((
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
        'createType="monolithicSparse"\n\n'
        f'RW {capacity} SPARSE "image.vmdk"\n\nddb.adapterType = "lsilogic"\n').encode())
    desc_sectors = len(descriptor) // SECTOR
    gd_offset = 1 + desc_sectors
    gd_sectors = -(-tables * 4 // SECTOR)
    gt_offset = gd_offset + gd_sectors
    gt_sectors = GTES * 4 // SECTOR
    overhead = gt_offset + tables * gt_sectors
    entries = [0] * (tables * GTES)
    grains = []
    position = overhead
    for offset in range(0, min(len(content), capacity_bytes), grain_bytes):
        grain = content[offset:offset + grain_bytes].ljust(grain_bytes, b"\0")
        if not grain.strip(b"\0"):
            continue
        entries[offset // grain_bytes] = position
        grains.append(grain)
        position += GRAIN_SECTORS
    directory = _pad(struct.pack(f"<{tables}I",
                                 *(gt_offset + i * gt_sectors for i in range(tables))))
    header = _HEADER.pack(b"KDMV", 1, 0x1, capacity, GRAIN_SECTORS, 1, desc_sectors, GTES, 0,
                          gd_offset, overhead, 0, b"\n \r\n", 0).ljust(SECTOR, b"\0")
    return (header + descriptor + directory + struct.pack(f"<{len(entries)}I", *entries)
            + b"".join(grains))
