"""Stream-optimized VMDK, the format vCenter exports disks in, generated chunk by chunk.

Layout (VMware "Virtual Disk Format 5.0", stream-optimized sparse extent):
a 512-byte sparse header (magic ``KDMV``, compressed grains with markers,
grain directory at the end), the text descriptor, then one compressed grain
per non-zero 64 KiB of the disk (``lba``, ``size``, deflate data), then for
each grain table that has grains a GT marker and the table, a GD marker and
the grain directory, a footer marker and the footer (the header again, now
with the directory's offset), and the end-of-stream marker. All-zero grains
are not written, so an empty 10 GiB disk exports as a few KiB.

Generation is incremental: memory holds one grain and the grain tables, not
the stream.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

SECTOR = 512
GRAIN_SECTORS = 128
GRAIN_BYTES = GRAIN_SECTORS * SECTOR
GTES_PER_GT = 512
MAGIC = 0x564D444B  # b"KDMV" read little-endian
#: Flags: valid newline detection (bit 0), compressed grains (16), markers (17).
FLAGS = 0x1 | 0x10000 | 0x20000
COMPRESSION_DEFLATE = 1
GD_AT_END = 0xFFFFFFFFFFFFFFFF
MARKER_EOS, MARKER_GT, MARKER_GD, MARKER_FOOTER = 0, 1, 2, 3
#: magic, version, flags, capacity, grainSize, descriptorOffset, descriptorSize,
#: numGTEsPerGT, rgdOffset, gdOffset, overHead, uncleanShutdown, four newline
#: detection characters, compressAlgorithm, padding.
HEADER = struct.Struct("<IIIQQQQIQQQB4sH433x")
GRAIN_PREFIX = struct.Struct("<QI")
MARKER = struct.Struct("<QII496x")



def _sectors(nbytes: int) -> int:
    return (nbytes + SECTOR - 1) // SECTOR


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (_sectors(len(data)) * SECTOR - len(data))


def _header(capacity_sectors: int, descriptor_sectors: int, gd_offset: int) -> bytes:
    return HEADER.pack(MAGIC, 3, FLAGS, capacity_sectors, GRAIN_SECTORS, 1,
                       descriptor_sectors, GTES_PER_GT, 0, gd_offset,
                       1 + descriptor_sectors, 0, b"\n \r\n", COMPRESSION_DEFLATE)


def descriptor(capacity_sectors: int, name: str, cid: int, adapter: str) -> bytes:
    cylinders = max(min(capacity_sectors // (255 * 63), 65535), 1)
    return (
        "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\n"
        f"CID={cid & 0xFFFFFFFF:08x}\nparentCID=ffffffff\n"
        "createType=\"streamOptimized\"\n\n# Extent description\n"
        f"RDONLY {capacity_sectors} SPARSE \"{name}\"\n\n# The Disk Data Base\n#DDB\n\n"
        f"ddb.adapterType = \"{adapter}\"\nddb.geometry.cylinders = \"{cylinders}\"\n"
        "ddb.geometry.heads = \"255\"\nddb.geometry.sectors = \"63\"\n"
        "ddb.virtualHWVersion = \"4\"\n"
    ).encode()


def stream_optimized(capacity_kb: int, content: bytes | None, *, name: str = "disk-0.vmdk",
                     cid: int = 0xFFFFFFFE, adapter: str = "lsilogic") -> Iterator[bytes]:
    """Yield the stream-optimized VMDK of a disk of ``capacity_kb`` holding ``content``.

    ``content`` is the disk's data from offset 0 (None: an empty disk);
    bytes beyond the capacity are not part of the disk and are dropped.
    """
    capacity_sectors = max(int(capacity_kb), 0) * 2
    desc = descriptor(capacity_sectors, name, cid, adapter)
    desc_sectors = _sectors(len(desc))
    yield _header(capacity_sectors, desc_sectors, GD_AT_END) + _pad(desc)
    position = 1 + desc_sectors  # in sectors
    data = memoryview(content or b"")[:capacity_sectors * SECTOR]
    tables: dict[int, list[int]] = {}
    for offset in range(0, len(data), GRAIN_BYTES):
        grain = bytes(data[offset:offset + GRAIN_BYTES])
        if not grain.strip(b"\0"):
            continue  # zero grains are implied by an empty grain table entry
        grain_index = offset // GRAIN_BYTES
        compressed = zlib.compress(grain.ljust(GRAIN_BYTES, b"\0"))
        block = _pad(GRAIN_PREFIX.pack(grain_index * GRAIN_SECTORS, len(compressed))
                     + compressed)
        table = tables.setdefault(grain_index // GTES_PER_GT, [0] * GTES_PER_GT)
        table[grain_index % GTES_PER_GT] = position
        position += len(block) // SECTOR
        yield block
    grains = (capacity_sectors + GRAIN_SECTORS - 1) // GRAIN_SECTORS
    directory = [0] * ((grains + GTES_PER_GT - 1) // GTES_PER_GT)
    for index in sorted(tables):
        table = struct.pack(f"<{GTES_PER_GT}I", *tables[index])
        yield MARKER.pack(_sectors(len(table)), 0, MARKER_GT) + table
        directory[index] = position + 1
        position += 1 + _sectors(len(table))
    gd = _pad(struct.pack(f"<{len(directory)}I", *directory))
    yield MARKER.pack(len(gd) // SECTOR, 0, MARKER_GD) + gd
    gd_offset = position + 1
    yield (MARKER.pack(1, 0, MARKER_FOOTER)
           + _header(capacity_sectors, desc_sectors, gd_offset)
           + MARKER.pack(0, 0, MARKER_EOS))


# -- reading sparse VMDKs (uploads: ImportVApp streams, hosted sparse images) ------------

#: Header fields up to the compression algorithm (the rest is padding).
_HEADER_FIELDS = struct.Struct("<IIIQQQQIQQQB4sH")
FLAG_COMPRESSED = 0x10000
FLAG_MARKERS = 0x20000
#: The simulator keeps disk data in memory: an upload whose data reaches
#: beyond this offset is refused (images in tests are a few MiB).
MAX_CONTENT_BYTES = 256 * 1024 * 1024


class InvalidVmdk(ValueError):
    """The data is not the VMDK it claims to be (or the simulator cannot hold it)."""


class SparseHeader:
    """The 512-byte header of a sparse extent (hosted monolithic sparse or stream)."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) < SECTOR:
            raise InvalidVmdk("a sparse VMDK starts with a 512-byte header")
        (magic, self.version, self.flags, self.capacity_sectors, self.grain_sectors,
         self.descriptor_offset, self.descriptor_sectors, self.gtes_per_gt, _rgd,
         self.gd_offset, self.overhead_sectors, _unclean, _newline,
         self.compression) = _HEADER_FIELDS.unpack_from(raw)
        grain = self.grain_sectors
        if magic != MAGIC or self.version not in (1, 2, 3) or grain < 8 \
                or grain & (grain - 1) or not self.gtes_per_gt:
            raise InvalidVmdk("not a sparse VMDK header")

    @property
    def stream_optimized(self) -> bool:
        return bool(self.flags & FLAG_COMPRESSED and self.flags & FLAG_MARKERS)

    @property
    def capacity_kb(self) -> int:
        return (self.capacity_sectors + 1) // 2


def sparse_header(data: bytes | None) -> SparseHeader | None:
    """The sparse header ``data`` starts with, or None (flat data, a descriptor...)."""
    try:
        return SparseHeader(data or b"")
    except InvalidVmdk:
        return None


def _materialize(grains: dict[int, bytes], capacity_bytes: int) -> bytes:
    if not grains:
        return b""
    end = min(max(offset + len(data) for offset, data in grains.items()), capacity_bytes)
    if end > MAX_CONTENT_BYTES:
        raise InvalidVmdk(f"data up to byte {end} exceeds the simulator's limit of "
                          f"{MAX_CONTENT_BYTES} bytes per disk")
    out = bytearray(end)
    for offset, data in grains.items():
        chunk = data[:max(end - offset, 0)]
        out[offset:offset + len(chunk)] = chunk
    return bytes(out.rstrip(b"\0"))


def hosted_sparse_content(data: bytes) -> tuple[SparseHeader, bytes]:
    """Header and data of a hosted (monolithic) sparse VMDK, following its grain tables."""
    head = SparseHeader(data)
    if head.stream_optimized or head.flags & FLAG_COMPRESSED:
        raise InvalidVmdk("a stream-optimized VMDK is not a hosted sparse disk")
    grain_bytes = head.grain_sectors * SECTOR
    per_table = head.gtes_per_gt
    tables = -(-head.capacity_sectors // (head.grain_sectors * per_table))
    gd_at = head.gd_offset * SECTOR
    if head.gd_offset in (0, GD_AT_END) or gd_at + 4 * tables > len(data):
        raise InvalidVmdk("the grain directory lies outside the file")
    grains = {}
    for index, gt_sector in enumerate(struct.unpack_from(f"<{tables}I", data, gd_at)):
        if not gt_sector:
            continue
        if gt_sector * SECTOR + 4 * per_table > len(data):
            raise InvalidVmdk(f"grain table {index} lies outside the file")
        entries = struct.unpack_from(f"<{per_table}I", data, gt_sector * SECTOR)
        for entry, grain_sector in enumerate(entries):
            if grain_sector > 1:  # 0: never written; 1: zeroed (version 2+)
                start = grain_sector * SECTOR
                grains[(index * per_table + entry) * grain_bytes] = \
                    data[start:start + grain_bytes]
    return head, _materialize(grains, head.capacity_sectors * SECTOR)


class StreamReader:
    """Reads a stream-optimized VMDK as it arrives (the body of an import upload).

    ``feed`` the bytes in any pieces; ``finish`` checks that the stream
    ended with its end-of-stream marker and returns the header and the
    disk's data (zero grains implied). Only the bytes of the grain being
    read are buffered, plus the decompressed grains.
    """

    def __init__(self) -> None:
        self.header: SparseHeader | None = None
        self.bytes_read = 0
        self._buffer = bytearray()
        self._skip = 0  # bytes of metadata (descriptor, tables) still to drop
        self._grains: dict[int, bytes] = {}
        self._ended = False

    def feed(self, data: bytes) -> None:
        if self._ended and data:
            raise InvalidVmdk("data after the end-of-stream marker")
        self.bytes_read += len(data)
        self._buffer += data
        while self._step():
            pass

    def _step(self) -> bool:
        """Consume one complete element from the buffer; False when more bytes are needed."""
        if self._skip:
            dropped = min(self._skip, len(self._buffer))
            del self._buffer[:dropped]
            self._skip -= dropped
            return bool(dropped) and not self._skip
        if self.header is None:
            if len(self._buffer) < SECTOR:
                return False
            self.header = SparseHeader(bytes(self._buffer[:SECTOR]))
            if not self.header.stream_optimized:
                raise InvalidVmdk("not a stream-optimized VMDK (no compressed grains and "
                                  "markers in its header)")
            if self.header.compression != COMPRESSION_DEFLATE:
                raise InvalidVmdk(f"unknown compression {self.header.compression}")
            del self._buffer[:SECTOR]
            self._skip = max(self.header.overhead_sectors - 1, 0) * SECTOR
            return True
        if self._ended or len(self._buffer) < GRAIN_PREFIX.size:
            return False
        lba, size = GRAIN_PREFIX.unpack_from(self._buffer)
        if size:  # a compressed grain, padded to a sector
            total = _sectors(GRAIN_PREFIX.size + size) * SECTOR
            if len(self._buffer) < total:
                return False
            payload = bytes(self._buffer[GRAIN_PREFIX.size:GRAIN_PREFIX.size + size])
            try:
                grain = zlib.decompress(payload)
            except zlib.error as exc:
                raise InvalidVmdk(f"grain at sector {lba} does not inflate: {exc}") from None
            if lba >= self.header.capacity_sectors:
                raise InvalidVmdk(f"grain at sector {lba} is beyond the disk's capacity")
            if grain.strip(b"\0"):
                self._grains[lba * SECTOR] = grain
            del self._buffer[:total]
            return True
        if len(self._buffer) < SECTOR:
            return False
        kind = struct.unpack_from("<I", self._buffer, 12)[0]
        del self._buffer[:SECTOR]
        if kind == MARKER_EOS:
            self._ended = True
            if self._buffer.strip(b"\0"):
                raise InvalidVmdk("data after the end-of-stream marker")
            return False
        if kind not in (MARKER_GT, MARKER_GD, MARKER_FOOTER):
            raise InvalidVmdk(f"unknown marker type {kind}")
        self._skip = lba * SECTOR  # the marker's sector count: its table or footer
        return True

    def finish(self) -> tuple[SparseHeader, bytes]:
        if self.header is None or not self._ended:
            raise InvalidVmdk(f"the stream ended after {self.bytes_read} bytes, before its "
                              "end-of-stream marker")
        return self.header, _materialize(self._grains, self.header.capacity_sectors * SECTOR)
