"""A strict reader of stream-optimized VMDKs, for checking what exports serve.

Independent of the generator (``simulator/vmdk_stream.py``): it follows the
format as VMware documents it and cross-checks the grain directory and grain
tables at the end of the stream against the grains it met on the way.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

SECTOR = 512
HEADER = struct.Struct("<4sIIQQQQIQQQB4sH")
GD_AT_END = 0xFFFFFFFFFFFFFFFF


@dataclasses.dataclass
class StreamVmdk:
    capacity_sectors: int
    grain_sectors: int
    descriptor: str
    #: Uncompressed grains by byte offset in the disk.
    grains: dict[int, bytes]

    def content(self, length: int) -> bytes:
        """The disk's first ``length`` bytes."""
        out = bytearray(length)
        for offset, data in self.grains.items():
            if offset < length:
                chunk = data[:length - offset]
                out[offset:offset + len(chunk)] = chunk
        return bytes(out)


def _header(raw: bytes) -> dict:
    (magic, version, flags, capacity, grain, desc_offset, desc_size, gtes, _rgd, gd_offset,
     overhead, unclean, newlines, compression) = HEADER.unpack(raw[:HEADER.size])
    assert magic == b"KDMV", magic
    assert version == 3 and flags & 0x30000 == 0x30000, (version, hex(flags))
    assert compression == 1 and unclean == 0 and newlines == b"\n \r\n"
    return dict(capacity=capacity, grain=grain, desc_offset=desc_offset, desc_size=desc_size,
                gtes=gtes, gd_offset=gd_offset, overhead=overhead)


def parse(stream: bytes) -> StreamVmdk:
    assert len(stream) % SECTOR == 0, "a stream-optimized VMDK is whole sectors"
    head = _header(stream)
    assert head["gd_offset"] == GD_AT_END, "a stream puts its grain directory at the end"
    desc = stream[head["desc_offset"] * SECTOR:(head["desc_offset"] + head["desc_size"])
                  * SECTOR].rstrip(b"\0").decode()
    grain_bytes = head["grain"] * SECTOR
    grains_at: dict[int, int] = {}  # sector of each grain -> its lba
    grains: dict[int, bytes] = {}
    tables: dict[int, tuple[int, ...]] = {}  # sector of each GT -> entries
    directory: tuple[int, ...] = ()
    footer = None
    pos = head["overhead"]
    while True:
        lba, size = struct.unpack_from("<QI", stream, pos * SECTOR)
        if size:  # a grain
            data = zlib.decompress(stream[pos * SECTOR + 12:pos * SECTOR + 12 + size])
            assert len(data) == grain_bytes and lba % head["grain"] == 0
            grains[lba * SECTOR] = data
            grains_at[pos] = lba
            pos += (12 + size + SECTOR - 1) // SECTOR
            continue
        kind = struct.unpack_from("<I", stream, pos * SECTOR + 12)[0]
        body = stream[(pos + 1) * SECTOR:(pos + 1 + lba) * SECTOR]
        if kind == 0:  # end of stream
            assert pos * SECTOR + SECTOR == len(stream), "bytes after the end-of-stream marker"
            break
        if kind == 1:
            tables[pos + 1] = struct.unpack(f"<{head['gtes']}I", body)
        elif kind == 2:
            directory = struct.unpack(f"<{len(body) // 4}I", body)
        elif kind == 3:
            footer = _header(body)
        else:
            raise AssertionError(f"unknown marker type {kind} at sector {pos}")
        pos += 1 + lba
    assert footer is not None and footer["capacity"] == head["capacity"]
    gd_sector = footer["gd_offset"]
    assert directory == struct.unpack(f"<{len(directory)}I",
                                      stream[gd_sector * SECTOR:gd_sector * SECTOR
                                             + 4 * len(directory)])
    # Every grain is reachable through the directory and its table, and nothing else is.
    reached = {}
    for index, gt_sector in enumerate(directory):
        if gt_sector:
            for entry, grain_sector in enumerate(tables[gt_sector]):
                if grain_sector:
                    reached[grain_sector] = (index * head["gtes"] + entry) * head["grain"]
    assert reached == grains_at, "grain tables disagree with the grains in the stream"
    return StreamVmdk(head["capacity"], head["grain"], desc, grains)
