"""File contents of simulated datastores (what the datastore browser sees)."""

from __future__ import annotations

import dataclasses
import datetime
import posixpath
import re
import threading

from pyVmomi import vim

_DS_PATH = re.compile(r"^\[(?P<ds>[^\]]+)\]\s?(?P<path>.*)$")


def parse_datastore_path(ds_path: str) -> tuple[str, str]:
    """``"[ds1] dir/file.vmdk"`` -> ``("ds1", "dir/file.vmdk")``."""
    match = _DS_PATH.match(ds_path or "")
    if match is None:
        raise vim.fault.InvalidDatastorePath(datastorePath=ds_path,
                                             msg=f"Invalid datastore path '{ds_path}'")
    return match.group("ds"), normalize(match.group("path"))


def normalize(path: str) -> str:
    path = posixpath.normpath("/" + (path or "")).lstrip("/")
    return "" if path == "." else path


@dataclasses.dataclass
class FileEntry:
    path: str
    is_dir: bool = False
    data: bytes | None = None
    #: Bytes this file takes on the datastore (a virtual disk's capacity).
    size: int = 0
    #: For virtual disks: capacity in KB; None for plain files.
    disk_capacity_kb: int | None = None
    thin: bool = False
    #: For virtual disks: the UUID in the disk's descriptor, which stays with
    #: the file whichever VM attaches it.
    disk_uuid: str | None = None
    modified: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))
    #: For virtual disks made by vCenter (a descriptor and its ``-flat``
    #: extent): the data in the extent, None when unknown or all zero. The
    #: file itself is served as its descriptor (see simulator/disk_files.py).
    extent: bytes | None = None
    #: For delta disks (linked clones): the datastore path of the parent disk,
    #: as the delta's descriptor names it; None for a standalone disk (see
    #: simulator/delta_disks.py).
    parent: str | None = None


class DatastoreFiles:
    """A flat namespace of files and directories per datastore name."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._stores: dict[str, dict[str, FileEntry]] = {}
        # Bytes used per datastore, kept up to date by every mutation: free
        # space is read on every disk creation and files number in the 10,000s.
        self._used: dict[str, int] = {}

    def add_datastore(self, ds_name: str) -> None:
        with self._lock:
            self._stores.setdefault(ds_name, {})
            self._used.setdefault(ds_name, 0)

    def _store(self, ds_name: str) -> dict[str, FileEntry]:
        try:
            return self._stores[ds_name]
        except KeyError:
            raise vim.fault.NotFound(msg=f"datastore '{ds_name}' not found") from None

    @staticmethod
    def _not_found(ds_name: str, path: str) -> vim.fault.FileNotFound:
        name = f"[{ds_name}] {path}"
        return vim.fault.FileNotFound(file=name, msg=f"File {name} was not found")

    def get(self, ds_name: str, path: str) -> FileEntry:
        with self._lock:
            path = normalize(path)
            if path == "":
                return FileEntry(path="", is_dir=True)
            entry = self._store(ds_name).get(path)
            if entry is None:
                raise self._not_found(ds_name, path)
            return entry

    def exists(self, ds_name: str, path: str) -> bool:
        with self._lock:
            path = normalize(path)
            return path == "" or path in self._store(ds_name)

    def _check_parent(self, ds_name: str, path: str, create_parents: bool) -> None:
        store = self._store(ds_name)
        parent = posixpath.dirname(path)
        missing = []
        while parent and parent not in store:
            missing.append(parent)
            parent = posixpath.dirname(parent)
        if parent and not store[parent].is_dir:
            raise vim.fault.FileFault(file=f"[{ds_name}] {parent}",
                                      msg=f"[{ds_name}] {parent} is not a directory")
        if missing and not create_parents:
            raise self._not_found(ds_name, missing[-1])
        for directory in reversed(missing):
            store[directory] = FileEntry(path=directory, is_dir=True)

    def mkdir(self, ds_name: str, path: str, create_parents: bool = False) -> None:
        with self._lock:
            path = normalize(path)
            store = self._store(ds_name)
            if path in store:
                raise vim.fault.FileAlreadyExists(file=f"[{ds_name}] {path}",
                                                  msg=f"Cannot complete the operation because "
                                                  f"the file or folder [{ds_name}] {path} "
                                                  "already exists")
            self._check_parent(ds_name, path, create_parents)
            store[path] = FileEntry(path=path, is_dir=True)

    def write(self, ds_name: str, path: str, data: bytes | None = None, *, size: int | None = None,
              disk_capacity_kb: int | None = None, thin: bool = False,
              overwrite: bool = True, create_parents: bool = True) -> FileEntry:
        with self._lock:
            path = normalize(path)
            store = self._store(ds_name)
            existing = store.get(path)
            if existing is not None and (existing.is_dir or not overwrite):
                raise vim.fault.FileAlreadyExists(file=f"[{ds_name}] {path}",
                                                  msg=f"File [{ds_name}] {path} already exists")
            self._check_parent(ds_name, path, create_parents)
            entry = FileEntry(path=path, data=data,
                              size=size if size is not None else len(data or b""),
                              disk_capacity_kb=disk_capacity_kb, thin=thin)
            store[path] = entry
            self._used[ds_name] += entry.size - (existing.size if existing is not None else 0)
            return entry

    def delete(self, ds_name: str, path: str) -> list[FileEntry]:
        """Delete a file or a directory tree; returns what was removed."""
        with self._lock:
            path = normalize(path)
            store = self._store(ds_name)
            if path not in store:
                raise self._not_found(ds_name, path)
            prefix = path + "/"
            gone = [store.pop(p) for p in list(store) if p == path or p.startswith(prefix)]
            self._used[ds_name] -= sum(e.size for e in gone if not e.is_dir)
            return gone

    def move(self, src_ds: str, src: str, dst_ds: str, dst: str, force: bool = False,
             copy: bool = False) -> None:
        with self._lock:
            src, dst = normalize(src), normalize(dst)
            source = self._store(src_ds)
            target = self._store(dst_ds)
            if src not in source:
                raise self._not_found(src_ds, src)
            if dst in target and not force:
                raise vim.fault.FileAlreadyExists(file=f"[{dst_ds}] {dst}",
                                                  msg=f"File [{dst_ds}] {dst} already exists")
            self._check_parent(dst_ds, dst, False)
            prefix = src + "/"
            for p in sorted(p for p in list(source) if p == src or p.startswith(prefix)):
                entry = source[p] if copy else source.pop(p)
                new_path = dst + p[len(src):]
                replaced = target.get(new_path)
                target[new_path] = dataclasses.replace(entry, path=new_path)
                size = 0 if entry.is_dir else entry.size
                self._used[dst_ds] += size - (replaced.size if replaced and not replaced.is_dir
                                              else 0)
                if not copy:
                    self._used[src_ds] -= size

    def listdir(self, ds_name: str, path: str, recursive: bool = False) -> list[FileEntry]:
        with self._lock:
            path = normalize(path)
            store = self._store(ds_name)
            if path and (path not in store or not store[path].is_dir):
                raise self._not_found(ds_name, path)
            prefix = path + "/" if path else ""
            out = []
            for p, entry in store.items():
                if not p.startswith(prefix) or p == path:
                    continue
                if not recursive and "/" in p[len(prefix):]:
                    continue
                out.append(entry)
            return sorted(out, key=lambda e: e.path)

    def grow(self, ds_name: str, path: str, delta_bytes: int,
             disk_capacity_kb: int | None = None) -> FileEntry:
        """Change a file's size (a virtual disk being extended)."""
        with self._lock:
            entry = self.get(ds_name, path)
            entry.size += delta_bytes
            if disk_capacity_kb is not None:
                entry.disk_capacity_kb = disk_capacity_kb
            self._used[ds_name] += delta_bytes
            return entry

    def entries(self) -> dict[str, list[FileEntry]]:
        """Every file and directory, by datastore (a saved state's copy)."""
        with self._lock:
            return {ds: list(store.values()) for ds, store in self._stores.items()}

    def replace(self, entries: dict[str, list[FileEntry]]) -> None:
        """Hold exactly ``entries`` (a loaded state's), recounting the space used."""
        with self._lock:
            self._stores = {ds: {e.path: e for e in files} for ds, files in entries.items()}
            self._used = {ds: sum(e.size for e in files if not e.is_dir)
                          for ds, files in entries.items()}

    def used_bytes(self, ds_name: str) -> int:
        with self._lock:
            self._store(ds_name)
            return self._used[ds_name]
