"""State that survives a restart: the simulator saved to a file and loaded again.

What is saved is what a vCenter keeps across a restart of its service: every
managed object in the registry (inventory, VMs, snapshots, tasks with their
results, rules, ...), the ids still to be handed out, and the datastores'
files. Sessions are not: clients log in again, as after a vCenter restart;
so are not the objects a session owns (views, collectors, filters) and
transfers in flight (NFC leases). A task that was still running is loaded as
failed.

A save encodes the state without holding the simulator's lock and keeps
the result only if nothing changed meanwhile (the registry's generation
moves with every change); a simulator that keeps changing is encoded under
the lock after a few tries. Either way the snapshot is consistent.

Format: one JSON document, written to a temporary file and renamed over the
state file (with fsync), so a crash at any moment leaves the previous state
or the new one, never a mix. File contents above ``_INLINE_BYTES`` are kept
apart, in ``<state file>.blobs/``, one file per content named by its
SHA-256: a large image is written once, not at every save, and stays valid
for the previous state until the new one is in place.

Objects are saved by reflection: each one's instance attributes, less those
its class declares ``transient`` (rebuilt by ``restored()``). pyVmomi data
objects are written field by field with their vmodl type names (pyVmomi's
types do not pickle, and its SOAP serializer is some twenty times slower);
references between simulator objects are written as moids. Loading builds
objects only of the simulator's own classes and pyVmomi types named in the
file, through the factory: unlike pickle, a state file cannot make the
simulator run code.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyVmomi import VmomiSupport

from nova_vsphere_driver.simulator.datastore_files import FileEntry
from nova_vsphere_driver.simulator.objects.base import ManagedObject
from nova_vsphere_driver.simulator.objects.network import DvPort

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

LOG = logging.getLogger(__name__)

FORMAT = "nova-vsphere-driver simulator state"
VERSION = 1
#: Snapshots taken without the lock before one is taken under it.
_OPTIMISTIC_TRIES = 3
#: Bytes values up to this size are written inside the JSON document.
_INLINE_BYTES = 4096
_COUNT = re.compile(r"count\((-?\d+)(?:, (-?\d+))?\)")
#: Python dataclasses a state may contain (loaded by name from this table only).
_DATACLASSES: dict[str, type] = {"FileEntry": FileEntry, "DvPort": DvPort}


class StateError(Exception):
    """The state cannot be saved or loaded; the message says what and where."""


# -- encoding -------------------------------------------------------------------------


@dataclasses.dataclass
class _Blobs:
    """Large bytes values met while encoding: SHA-256 -> bytes."""

    found: dict[str, bytes] = dataclasses.field(default_factory=dict)
    #: id(bytes) -> (bytes, digest) of the previous save: bytes are immutable,
    #: so an unchanged image is not hashed again.
    known: dict[int, tuple[bytes, str]] = dataclasses.field(default_factory=dict)
    seen: dict[int, tuple[bytes, str]] = dataclasses.field(default_factory=dict)

    def ref(self, data: bytes) -> dict:
        hit = self.known.get(id(data))
        digest = hit[1] if hit is not None and hit[0] is data else \
            hashlib.sha256(data).hexdigest()
        self.seen[id(data)] = (data, digest)
        self.found[digest] = data
        return {"_blob": digest, "len": len(data)}


_VMODL_NAMES: dict[type, str] = {}
_PROPERTIES: dict[type, tuple[frozenset[str], frozenset[str]]] = {}


def _vmodl_name(cls: type) -> str:
    name = _VMODL_NAMES.get(cls)
    if name is None:
        name = _VMODL_NAMES[cls] = VmomiSupport.GetVmodlName(cls)
    return name


def _properties(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """(all property names, names of those typed xsd:anyType) of a data object class."""
    found = _PROPERTIES.get(cls)
    if found is None:
        props = cls._GetPropertyList()
        found = _PROPERTIES[cls] = (frozenset(p.name for p in props),
                                    frozenset(p.name for p in props if p.type is object))
    return found


def _plain(value: Any) -> Any:
    """A long, short, enum value, URI, ... as the JSON type it is written as."""
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    return value


def _any_value(value: Any) -> Any:
    """A value of a field typed anyType: its own type goes with it."""
    if value is None or isinstance(value, (VmomiSupport.DataObject, VmomiSupport.ManagedObject)):
        return value
    if isinstance(value, list):
        item = getattr(type(value), "Item", object)
        return {"_any": _vmodl_name(type(value)),
                "v": [_any_value(v) for v in value] if item is object else list(value)}
    if isinstance(value, (bool, int, float, str)):
        return {"_any": _vmodl_name(type(value)), "v": _plain(value)}
    return value  # datetime, bytes: tagged by the JSON hook


class _Encoder:
    """Turns one object's attributes into JSON-ready values (call under the registry lock).

    An object may refer to one that is no longer registered (a task to the
    VM it destroyed): such objects are saved too, as ``detached``, and
    loaded without being registered again.
    """

    def __init__(self, blobs: _Blobs, registry) -> None:
        self.blobs = blobs
        self.registry = registry
        self.detached: dict[str, ManagedObject] = {}

    def value(self, value: Any, where: str) -> Any:
        kind = type(value)
        if value is None or kind in (bool, int, float, str):
            return value
        if isinstance(value, ManagedObject):
            if not value.persists():
                raise StateError(f"{where} refers to {value.moid}, which does not survive a "
                                 "restart")
            if value.moid not in self.registry or self.registry.get(value.moid) is not value:
                self.detached.setdefault(value.moid, value)
            return {"_ref": value.moid}
        if isinstance(value, (VmomiSupport.DataObject, VmomiSupport.ManagedObject)):
            return value  # the JSON hook (json_default) writes pyVmomi values
        if isinstance(value, (bool, int, float, str)):  # long, short, enums, URIs, ...
            return {"_any": _vmodl_name(kind), "v": _plain(value)}
        if isinstance(value, list):
            items = [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]
            if kind is list:
                return items
            return {"_any": _vmodl_name(kind), "v": items}  # a typed pyVmomi array
        if kind is tuple:
            return {"_tuple": [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if kind in (set, frozenset):
            return {"_set": [self.value(v, f"{where}{{}}") for v in value],
                    "frozen": kind is frozenset}
        if kind is dict:
            return {"_dict": [[self.value(k, f"{where} key"), self.value(v, f"{where}[{k!r}]")]
                              for k, v in value.items()]}
        if isinstance(value, bytes):
            if len(value) > _INLINE_BYTES:
                return self.blobs.ref(value)
            return {"_b": base64.b64encode(value).decode("ascii")}
        if isinstance(value, datetime.datetime):
            return {"_dt": value.isoformat()}
        if kind is itertools.count:
            match = _COUNT.fullmatch(repr(value))
            if match is None:
                raise StateError(f"{where}: a counter {value!r} that cannot be saved")
            return {"_count": [int(match.group(1)), int(match.group(2) or 1)]}
        if isinstance(value, type) and issubclass(value, (VmomiSupport.DataObject,
                                                          VmomiSupport.ManagedObject)):
            return {"_type": _vmodl_name(value)}
        if dataclasses.is_dataclass(value) and _DATACLASSES.get(kind.__name__) is kind:
            return {"_dc": kind.__name__,
                    "v": {f.name: self.value(getattr(value, f.name), f"{where}.{f.name}")
                          for f in dataclasses.fields(value)}}
        raise StateError(f"{where}: a {kind.__module__}.{kind.__qualname__} cannot be saved")

    def attributes(self, obj: ManagedObject) -> dict[str, Any]:
        skip = obj.transient
        where = f"{type(obj).__name__} {obj.moid}"
        return {name: self.value(value, f"{where}.{name}")
                for name, value in vars(obj).items() if name not in skip}


def _json_default(blobs: _Blobs) -> Callable[[Any], Any]:
    """The JSON encoder's hook for pyVmomi values (the bulk of a state: VM configs)."""

    def default(value: Any) -> Any:
        if isinstance(value, VmomiSupport.DataObject):
            names, any_typed = _properties(type(value))
            out = {"_t": _vmodl_name(type(value))}
            for name, field in value.__dict__.items():
                if field is None or name not in names or (isinstance(field, list) and not field):
                    continue
                out[name] = _any_value(field) if name in any_typed else field
            return out
        if isinstance(value, VmomiSupport.ManagedObject):
            return {"_mo": _vmodl_name(type(value)), "id": value._moId}
        if isinstance(value, VmomiSupport.ManagedMethod):
            # A vmodl.MethodName value (TaskInfo.name, in a task's event).
            return {"_method": value.info.wsdlName}
        if isinstance(value, datetime.datetime):
            return {"_dt": value.isoformat()}
        if isinstance(value, bytes):
            if len(value) > _INLINE_BYTES:
                return blobs.ref(value)
            return {"_b": base64.b64encode(value).decode("ascii")}
        if isinstance(value, type):
            return {"_type": _vmodl_name(value)}
        raise TypeError(f"a {type(value).__qualname__} cannot be saved")

    return default


# -- decoding ---------------------------------------------------------------------------


class _Ref:
    """A reference to a simulator object, resolved once every object exists."""

    __slots__ = ("moid",)

    def __init__(self, moid: str) -> None:
        self.moid = moid


def _coerce(value: Any, declared: type) -> Any:
    """``value`` as the declared type of its field (JSON keeps no long, enum, ...).

    Checks what pyVmomi would check on assignment: the loader builds data
    objects without it, for speed.
    """
    if value is None or declared is object or isinstance(value, declared):
        return value
    if issubclass(declared, list):
        if not isinstance(value, list):
            raise StateError(f"a {type(value).__name__} where a {declared.__name__} belongs")
        item = declared.Item
        return declared([_coerce(v, item) for v in value])
    if issubclass(declared, bytes) and isinstance(value, bytes):
        return declared(value)
    if isinstance(value, (bool, int, float, str)) and (
            declared is bool or issubclass(declared, (int, float, str))
            and not isinstance(value, bool)):
        return declared(value)
    raise StateError(f"a {type(value).__name__} where a {declared.__name__} belongs")


_DEFAULTS: dict[type, tuple[tuple[str, Any], ...]] = {}


def _data_object(cls: type, fields: dict[str, Any]) -> Any:
    """``cls(**fields)`` without pyVmomi's per-field checks (``_coerce`` made them)."""
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _DEFAULTS[cls] = tuple(cls().__dict__.items())
    obj = cls.__new__(cls)
    values = obj.__dict__
    for name, default in defaults:
        values[name] = type(default)() if isinstance(default, list) else default
    values.update(fields)
    return obj


_VMODL_TYPES: dict[str, type] = {}
_DECLARED: dict[tuple[type, str], type] = {}


def _vmodl_type(name: str) -> type:
    """The pyVmomi type of vmodl name ``name`` (each looked up once: a state names few
    types, many times)."""
    cls = _VMODL_TYPES.get(name)
    if cls is None:
        cls = _VMODL_TYPES[name] = VmomiSupport.GetVmodlType(name)
    return cls


def _declared(cls: type, name: str) -> type:
    """The declared type of property ``name`` of data object type ``cls``."""
    found = _DECLARED.get((cls, name))
    if found is None:
        found = _DECLARED[(cls, name)] = cls._GetPropertyInfo(name).type
    return found


class _Decoder:
    """``json.loads`` hook: tagged values back to Python and pyVmomi values."""

    def __init__(self, read_blob: Callable[[str, int], bytes]) -> None:
        self.read_blob = read_blob

    def __call__(self, obj: dict) -> Any:
        if "_t" in obj:
            cls = _vmodl_type(obj.pop("_t"))
            if not issubclass(cls, VmomiSupport.DataObject):
                raise StateError(f"{cls} is not a data object type")
            fields = {}
            for name, value in obj.items():
                fields[name] = _coerce(value, _declared(cls, name))
            return _data_object(cls, fields)
        if "_ref" in obj:
            return _Ref(obj["_ref"])
        if "_mo" in obj:
            cls = _vmodl_type(obj["_mo"])
            if not issubclass(cls, VmomiSupport.ManagedObject):
                raise StateError(f"{cls} is not a managed object type")
            return cls(obj["id"])
        if "_method" in obj:
            try:
                return VmomiSupport.GuessWsdlMethod(obj["_method"])
            except KeyError:
                raise StateError(f"unknown method {obj['_method']!r}") from None
        if "_any" in obj:
            return _coerce(obj["v"], _vmodl_type(obj["_any"]))
        if "_dt" in obj:
            return datetime.datetime.fromisoformat(obj["_dt"])
        if "_b" in obj:
            return base64.b64decode(obj["_b"])
        if "_blob" in obj:
            return self.read_blob(obj["_blob"], obj["len"])
        if "_tuple" in obj:
            return tuple(obj["_tuple"])
        if "_set" in obj:
            return (frozenset if obj.get("frozen") else set)(obj["_set"])
        if "_dict" in obj:
            return {_hashable(k): v for k, v in obj["_dict"]}
        if "_count" in obj:
            start, step = obj["_count"]
            return itertools.count(start, step)
        if "_type" in obj:
            return _vmodl_type(obj["_type"])
        if "_dc" in obj:
            cls = _DATACLASSES.get(obj["_dc"])
            if cls is None:
                raise StateError(f"unknown record type {obj['_dc']!r}")
            return cls(**obj["v"])
        return obj


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _resolve(value: Any, objects: dict[str, ManagedObject], where: str) -> Any:
    """``value`` with every ``_Ref`` replaced by its object (in place for containers)."""
    if isinstance(value, _Ref):
        try:
            return objects[value.moid]
        except KeyError:
            raise StateError(f"{where} refers to {value.moid}, which the state does not "
                             "hold") from None
    if type(value) is list:
        for i, item in enumerate(value):
            value[i] = _resolve(item, objects, where)
        return value
    if type(value) is tuple:
        return tuple(_resolve(v, objects, where) for v in value)
    if type(value) in (set, frozenset):
        return type(value)(_resolve(v, objects, where) for v in value)
    if type(value) is dict:
        return {_resolve(k, objects, where): _resolve(v, objects, where)
                for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            setattr(value, f.name, _resolve(getattr(value, f.name), objects, where))
    return value


# -- files on disk -----------------------------------------------------------------------


def _blob_dir(path: str) -> str:
    return path + ".blobs"


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not every file system syncs directories
    finally:
        os.close(fd)


def _write_atomically(path: str, chunks) -> None:
    """Write ``chunks`` to ``path`` through a temporary file renamed over it."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


# -- saving and loading ------------------------------------------------------------------


@dataclasses.dataclass
class SaveStats:
    objects: int
    files: int
    blobs_written: int
    state_bytes: int
    #: The registry generation the saved state is of.
    generation: int
    #: Time the simulator's lock was held (0 unless it kept changing meanwhile).
    seconds_locked: float
    seconds_total: float


def _entry(obj: ManagedObject, encoder: _Encoder) -> dict:
    return {"class": type(obj).__name__, "moid": obj.moid, "state": encoder.attributes(obj)}


class StateFile:
    """The state of one simulator in ``path`` (and its blobs next to it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._known_blobs: dict[int, tuple[bytes, str]] = {}

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def save(self, sim: Simulator) -> SaveStats:
        """Write a consistent snapshot of ``sim``'s state.

        The snapshot is first taken without the registry lock (a big
        inventory takes seconds to encode, and calls would wait that long),
        then checked: if nothing changed meanwhile (every change bumps the
        registry's generation), it is consistent. A simulator that keeps
        changing is encoded under the lock after a few tries.
        """
        with self._lock:
            started = time.monotonic()
            registry = sim.registry
            snapshot = None
            locked = 0.0
            for _attempt in range(_OPTIMISTIC_TRIES):
                generation = registry.generation
                try:
                    candidate = self._snapshot(sim)
                except (RuntimeError, StateError):  # torn by a concurrent change
                    continue
                with registry.lock:
                    if registry.generation == generation:
                        snapshot = candidate
                        break
            if snapshot is None:
                with registry.lock:
                    locked_at = time.monotonic()
                    generation = registry.generation
                    snapshot = self._snapshot(sim)
                    locked = time.monotonic() - locked_at
            text, blobs, objects, files = snapshot
            written = self._write_blobs(blobs.found)
            data = text.encode("ascii")
            _write_atomically(self.path, [data])
            self._drop_unused_blobs(set(blobs.found))
            self._known_blobs = blobs.seen
            return SaveStats(objects=objects, files=files, blobs_written=written,
                             state_bytes=len(data), generation=generation,
                             seconds_locked=locked, seconds_total=time.monotonic() - started)

    def _snapshot(self, sim: Simulator) -> tuple[str, _Blobs, int, int]:
        """(JSON text, large contents, object count, file count) of ``sim`` now."""
        blobs = _Blobs(known=self._known_blobs)
        registry = sim.registry
        encoder = _Encoder(blobs, registry)
        objects = [o for o in registry.all("ManagedObject") if o.persists()]
        files = sim.files.entries()
        document = {
            "format": FORMAT,
            "version": VERSION,
            "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "instance_uuid": sim.instance_uuid,
            "id_counters": registry.id_counters(),
            "objects": [_entry(o, encoder) for o in objects],
            "files": {ds: [encoder.value(e, f"file [{ds}] {e.path}") for e in entries]
                      for ds, entries in files.items()},
            "detached": [],
        }
        done: set[str] = set()
        while len(done) < len(encoder.detached):
            for moid, obj in list(encoder.detached.items()):
                if moid not in done:
                    done.add(moid)
                    document["detached"].append(_entry(obj, encoder))
        try:
            text = json.dumps(document, default=_json_default(blobs), separators=(",", ":"),
                              check_circular=False)
        except TypeError as exc:
            raise StateError(f"cannot save the simulator's state: {exc}") from exc
        return text, blobs, len(objects), sum(len(v) for v in files.values())

    def _write_blobs(self, blobs: dict[str, bytes]) -> int:
        if not blobs:
            return 0
        directory = _blob_dir(self.path)
        os.makedirs(directory, exist_ok=True)
        written = 0
        for digest, data in blobs.items():
            target = os.path.join(directory, digest)
            if not os.path.exists(target):
                _write_atomically(target, [data])
                written += 1
        return written

    def _drop_unused_blobs(self, used: set[str]) -> None:
        directory = _blob_dir(self.path)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        for name in names:
            if name not in used:
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError as exc:
                    LOG.warning("cannot remove the unused state blob %s: %s", name, exc)

    def _read_blob(self, digest: str, length: int) -> bytes:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise StateError(f"invalid blob name {digest!r}")
        path = os.path.join(_blob_dir(self.path), digest)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise StateError(f"the state's file content {path} cannot be read: "
                             f"{exc.strerror or exc}") from exc
        if len(data) != length or hashlib.sha256(data).hexdigest() != digest:
            raise StateError(f"the state's file content {path} is damaged")
        return data

    @staticmethod
    def _objects(sim: Simulator, document: dict) -> tuple[list, dict]:
        """The saved objects, built and linked but not registered, and the files."""
        loaded: dict[str, ManagedObject] = {}
        states = []  # (object, saved attributes, registered?)
        for key, registered in (("objects", True), ("detached", False)):
            for entry in document[key]:
                obj = sim.factory.blank(entry["class"], entry["moid"])
                loaded[obj.moid] = obj
                states.append((obj, entry["state"], registered))
        for obj, state, _registered in states:
            where = f"{type(obj).__name__} {obj.moid}"
            for name, value in state.items():
                setattr(obj, name, _resolve(value, loaded, f"{where}.{name}"))
        files = {ds: [_resolve(e, loaded, f"file [{ds}]") for e in entries]
                 for ds, entries in document["files"].items()}
        return states, files

    def load(self, sim: Simulator) -> int:
        """Replace ``sim``'s objects and files with the saved ones; returns the object count.

        Sessions end (clients log in again, as after a vCenter restart).
        """
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        try:
            document = json.loads(raw, object_hook=_Decoder(self._read_blob))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StateError(f"{self.path} is not a valid simulator state: {exc}") from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise StateError(f"{self.path} is not a simulator state file")
        if document.get("version") != VERSION:
            raise StateError(f"{self.path} has state version {document.get('version')!r}; "
                             f"this simulator reads version {VERSION}")
        try:
            states, files = self._objects(sim, document)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StateError(f"{self.path} is not a valid simulator state: {exc}") from exc
        sim.expire_sessions()  # before anything is replaced: waiters end, views go
        registry = sim.registry
        with registry.lock:
            for obj in registry.all("ManagedObject"):
                registry.remove(obj.moid)
            for obj, _state, registered in states:
                if registered:
                    registry.add(obj)
            registry.set_id_counters(document["id_counters"])
            sim.files.replace(files)
            sim.instance_uuid = document["instance_uuid"]
            for obj, _state, _registered in states:
                obj.restored()
            sim.rebind_objects()
            registry.touch()
        return sum(1 for _obj, _state, registered in states if registered)


class StateKeeper:
    """Saves a simulator's state every ``interval`` seconds (when it changed) and at stop."""

    def __init__(self, sim: Simulator, state: StateFile, interval: float,
                 saved_generation: int | None = None) -> None:
        self.sim = sim
        self.state = state
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The registry generation the file holds (None: unknown, save).
        self._saved_generation = saved_generation
        self.last_error: Exception | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vsphere-sim-state",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.save_if_changed()

    def save_if_changed(self) -> SaveStats | None:
        if self.sim.registry.generation == self._saved_generation and self.state.exists():
            return None
        try:
            stats = self.state.save(self.sim)
        except (OSError, StateError) as exc:
            # The previous state stays in place; the next period tries again.
            self.last_error = exc
            LOG.error("cannot save the simulator's state to %s: %s", self.state.path, exc)
            return None
        self.last_error = None
        self._saved_generation = stats.generation
        LOG.debug("state saved to %s: %d objects, %d files, %d bytes, %.3f s (%.3f s locked)",
                  self.state.path, stats.objects, stats.files, stats.state_bytes,
                  stats.seconds_total, stats.seconds_locked)
        return stats

    def stop(self) -> None:
        """Stop the periodic saves and save once more."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.interval, 30.0))
            self._thread = None
        self.save_if_changed()
