"""PropertyCollector: retrieval with traversal and paging, filters, updates."""

from __future__ import annotations

import itertools
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from pyVmomi import SoapAdapter, VmomiSupport, vim, vmodl

from nova_vsphere_driver.simulator import soap
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.vim_data import declared_type, typed
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

PC = vmodl.query.PropertyCollector
_MAX_WAIT_FOREVER = 1800.0


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)
    return [value]


class Retrieval:
    """Evaluates FilterSpecs against the registry (call with the lock held)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def select(self, spec: PC.FilterSpec) -> tuple[list[ManagedObject], list]:
        """Objects a filter spec selects, in order, and the missing ones."""
        named: dict[str, PC.TraversalSpec] = {}

        def collect_names(select_set) -> None:
            for ss in select_set or ():
                if isinstance(ss, PC.TraversalSpec):
                    if ss.name and ss.name not in named:
                        named[ss.name] = ss
                        collect_names(ss.selectSet)
                    elif not ss.name:
                        collect_names(ss.selectSet)

        for ospec in spec.objectSet:
            collect_names(ospec.selectSet)

        registry = self.sim.registry
        selected: dict[str, ManagedObject] = {}
        missing = []
        visited: set[tuple[str, int]] = set()

        def visit(obj: ManagedObject, select_set) -> None:
            for ss in select_set or ():
                if isinstance(ss, PC.TraversalSpec):
                    tspec = ss
                else:
                    tspec = named.get(ss.name)
                    if tspec is None:
                        raise invalid_argument("selectSet", f"unknown selection spec {ss.name!r}")
                if not issubclass(obj.vim_type, tspec.type):
                    continue
                key = (obj.moid, id(tspec))
                if key in visited:
                    continue
                visited.add(key)
                try:
                    targets = _as_list(obj.get_property(tspec.path))
                except vmodl.query.InvalidProperty:
                    raise
                for ref in targets:
                    if not isinstance(ref, VmomiSupport.ManagedObject) or ref._moId not in registry:
                        continue
                    target = registry.get(ref._moId, ref)
                    if not tspec.skip:
                        selected.setdefault(target.moid, target)
                    visit(target, tspec.selectSet)

        for ospec in spec.objectSet:
            ref = ospec.obj
            if ref is None or ref._moId not in registry:
                if spec.reportMissingObjectsInResults:
                    missing.append(ref)
                    continue
                raise vmodl.fault.ManagedObjectNotFound(
                    obj=ref, msg=f"The object '{getattr(ref, '_moId', ref)}' has already been "
                    "deleted or has not been completely created")
            obj = registry.get(ref._moId)
            if not ospec.skip:
                selected.setdefault(obj.moid, obj)
            visit(obj, ospec.selectSet)
        return list(selected.values()), missing

    @staticmethod
    def paths_for(obj: ManagedObject, prop_set) -> list[str] | None:
        """Property paths the PropertySpecs ask of ``obj`` (None: no spec)."""
        paths: list[str] | None = None
        for pspec in prop_set:
            if not issubclass(obj.vim_type, pspec.type):
                continue
            paths = paths if paths is not None else []
            wanted = obj.property_names() if pspec.all else (pspec.pathSet or [])
            for path in wanted:
                if path not in paths:
                    paths.append(path)
        return paths

    def values(self, obj: ManagedObject, paths: list[str]) -> dict[str, Any]:
        """{path: value} for the set values among ``paths``."""
        out: dict[str, Any] = {}
        for path in paths:
            value = obj.get_property(path)
            if value is not None:  # vCenter omits unset properties
                out[path] = typed(value, declared_type(obj.vim_type, path))
        return out

    def _gather(self, specs: list) -> list:
        """What RetrieveProperties returns, in order: ``(obj, paths)`` per selected
        object (paths merged over the specs) and ``(None, ref)`` per missing one."""
        gathered: dict[str, tuple] = {}
        for spec in specs:
            objects, missing = self.select(spec)
            for obj in objects:
                paths = self.paths_for(obj, spec.propSet)
                if paths is None:
                    continue
                entry = gathered.get(obj.moid)
                if entry is None:
                    gathered[obj.moid] = (obj, list(paths))
                else:
                    entry[1].extend(p for p in paths if p not in entry[1])
            for ref in missing:
                gathered.setdefault(f"missing:{ref._moId}", (None, ref))
        return list(gathered.values())

    @staticmethod
    def _missing_content(ref) -> PC.ObjectContent:
        return PC.ObjectContent(obj=ref, missingSet=[
            PC.MissingProperty(path="", fault=vmodl.fault.ManagedObjectNotFound(obj=ref))])

    def contents(self, specs: list) -> list:
        """RetrieveProperties semantics: ObjectContent for every selected object."""
        result = []
        for obj, paths in self._gather(specs):
            if obj is None:  # paths: the missing object's reference
                result.append(self._missing_content(paths))
                continue
            result.append(PC.ObjectContent(obj=obj.ref, propSet=[
                vmodl.DynamicProperty(name=path, val=val)
                for path, val in self.values(obj, paths).items()]))
        return result

    def encoded(self, specs: list) -> list[str]:
        """:meth:`contents` in wire form: each ObjectContent's inner XML.

        Each object's reference and each property value is serialized once
        per registry generation (the values cannot change within one) and
        reused by every read until then: a read of unchanged objects only
        joins strings.
        """
        fragments = _fragments(self.sim.registry)
        out = []
        for obj, paths in self._gather(specs):
            if obj is None:  # paths: the missing object's reference
                content = self._missing_content(paths)
                out.append(soap.encode_element(content.obj, "obj", _MANAGED_OBJECT) + "".join(
                    soap.encode_element(m, "missingSet", PC.MissingProperty)
                    for m in content.missingSet))
                continue
            parts = [fragments.get((obj.moid, "")) or
                     fragments.setdefault((obj.moid, ""), soap.encode_element(
                         obj.ref, "obj", _MANAGED_OBJECT))]
            for path in paths:
                key = (obj.moid, path)
                fragment = fragments.get(key)
                if fragment is None:
                    fragment = self._encode_property(obj, path)
                    if path.partition(".")[0] not in obj.uncached:
                        fragments[key] = fragment
                parts.append(fragment)
            out.append("".join(parts))
        return out

    @staticmethod
    def _encode_property(obj: ManagedObject, path: str) -> str:
        value = obj.get_property(path)
        if value is None:  # vCenter omits unset properties
            return ""
        prop = vmodl.DynamicProperty(name=path,
                                     val=typed(value, declared_type(obj.vim_type, path)))
        return soap.encode_element(prop, "propSet", vmodl.DynamicProperty)


_MANAGED_OBJECT = VmomiSupport.GetVmodlType("vmodl.ManagedObject")
#: registry -> its wire fragments {(moid, path): xml} and their generation.
_FRAGMENT_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fragments(registry) -> dict:
    """The registry's fragment cache, emptied when the registry changed (lock held)."""
    generation, cache = _FRAGMENT_CACHES.get(registry, (None, None))
    if generation != registry.generation:
        cache = {}
        _FRAGMENT_CACHES[registry] = (registry.generation, cache)
    return cache


class _SessionState:
    """Per-session state of a collector: paging tokens, filters, versions."""

    def __init__(self) -> None:
        self.tokens: dict[str, list] = {}
        self.filters: dict[str, PropertyFilter] = {}
        self.version = 0
        self.cancel_wait = False
        #: The session ended (or the collector was destroyed): waits end.
        self.released = False


class PropertyFilter(ManagedObject):
    vim_type = vmodl.query.PropertyCollector.Filter
    moid_prefix = "filter"

    def __init__(self, sim: Simulator, collector: PropertyCollector, state: _SessionState,
                 spec, partial: bool) -> None:
        super().__init__(sim, f"session[{uuid.uuid4()}]{uuid.uuid4().hex[:8]}")
        self.collector = collector
        self.state = state
        self.spec = spec
        self.partial = partial
        # moid -> {path: serialized value}, as last reported to the client.
        self.reported: dict[str, dict[str, str]] = {}
        # moid -> typed reference of each reported object ("leave" names it
        # even once the object is gone from the registry).
        self.refs: dict[str, Any] = {}

    def persists(self) -> bool:
        return False  # a session's filter

    def _get_spec(self):
        return self.spec

    def _get_partialUpdates(self):  # noqa: N802
        return self.partial

    def DestroyPropertyFilter(self, ctx: CallContext) -> None:  # noqa: N802
        with self.sim.registry.lock:
            self.state.filters.pop(self.moid, None)
            self.sim.registry.remove(self.moid)


def _fingerprint(value: Any) -> str:
    return SoapAdapter.SerializeToStr(value) if value is not None else ""


class PropertyCollector(ManagedObject):
    vim_type = vmodl.query.PropertyCollector
    moid_prefix = "session[collector]"

    def __init__(self, sim: Simulator, moid: str | None = None, owner: str | None = None) -> None:
        super().__init__(sim, moid or f"session[{uuid.uuid4()}]{uuid.uuid4().hex[:8]}")
        self.owner_session = owner
        self._states: dict[str, _SessionState] = {}
        self._token_ids = itertools.count(1)

    # Per-session state (filters, paging tokens) ends with the sessions.
    transient = ManagedObject.transient | {"_states", "_token_ids"}

    def restored(self) -> None:
        super().restored()
        self._states = {}
        self._token_ids = itertools.count(1)

    def _state(self, ctx: CallContext) -> _SessionState:
        key = ctx.session.key if ctx.session is not None else ""
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _SessionState()
        return state

    def forget_session(self, key: str) -> None:
        state = self._states.pop(key, None)
        if state is not None:
            state.released = True
            for flt in state.filters.values():
                self.sim.registry.remove(flt.moid)
            self.sim.registry.touch()  # wakes a wait of that session, which then ends

    def _get_filter(self):
        return [f.ref for s in self._states.values() for f in s.filters.values()]

    # -- retrieval ---------------------------------------------------------

    def RetrieveContents(self, ctx: CallContext, specSet) -> list:  # noqa: N802,N803
        return self.RetrieveProperties(ctx, specSet)

    # Results go out as soap.Encoded, built from cached wire fragments:
    # reads of unchanged objects (most reads) serialize nothing.

    def RetrieveProperties(self, ctx: CallContext, specSet):  # noqa: N802,N803
        with self.sim.registry.lock:
            objects = Retrieval(self.sim).encoded(specSet)
        if not objects:
            return []
        return soap.Encoded("".join(f"<returnval>{o}</returnval>" for o in objects))

    def RetrievePropertiesEx(self, ctx: CallContext, specSet, options=None):  # noqa: N802,N803
        page = options.maxObjects if options is not None and options.maxObjects else None
        if page is not None and page < 0:
            raise invalid_argument("options.maxObjects")
        with self.sim.registry.lock:
            objects = Retrieval(self.sim).encoded(specSet)
        if not objects:
            return None
        return self._page(self._state(ctx), objects, page)

    def _page(self, state: _SessionState, objects: list[str], page: int | None):
        """A RetrieveResult of encoded ObjectContents, the rest kept behind a token."""
        token = ""
        if page is not None and len(objects) > page:
            token = str(next(self._token_ids))
            state.tokens[token] = (objects[page:], page)
            objects = objects[:page]
            token = f"<token>{token}</token>"
        return soap.Encoded("<returnval>" + token +
                            "".join(f"<objects>{o}</objects>" for o in objects) + "</returnval>")

    def ContinueRetrievePropertiesEx(self, ctx: CallContext, token: str):  # noqa: N802
        state = self._state(ctx)
        try:
            rest, page = state.tokens.pop(token)
        except KeyError:
            raise invalid_argument("token", f"unknown or exhausted token {token!r}") from None
        return self._page(state, rest, page)

    def CancelRetrievePropertiesEx(self, ctx: CallContext, token: str) -> None:  # noqa: N802
        if self._state(ctx).tokens.pop(token, None) is None:
            raise invalid_argument("token", f"unknown token {token!r}")

    # -- collectors and filters -------------------------------------------

    def CreatePropertyCollector(self, ctx: CallContext):  # noqa: N802
        owner = ctx.session.key if ctx.session else None
        return self.sim.factory.property_collector(owner).ref

    def DestroyPropertyCollector(self, ctx: CallContext) -> None:  # noqa: N802
        if self.moid == "propertyCollector":
            raise vim.fault.InvalidState(msg="The default property collector cannot be destroyed")
        self.release()

    def release(self) -> None:
        """Destroy this collector with its filters."""
        with self.sim.registry.lock:
            for key in list(self._states):
                self.forget_session(key)
            self.sim.registry.remove(self.moid)

    def CreateFilter(self, ctx: CallContext, spec, partialUpdates: bool):  # noqa: N802,N803
        with self.sim.registry.lock:
            # Validate now, as vCenter does: bad objects or paths fault here.
            Retrieval(self.sim).contents([spec])
            return self.sim.factory.property_filter(self, self._state(ctx), spec,
                                                    partialUpdates).ref

    # -- updates ------------------------------------------------------------

    def _updates(self, state: _SessionState, full: bool, limit: int | None = None):
        """The FilterUpdates since the last report, and whether ``limit`` cut them short.

        Objects left out by the limit keep their last reported state, so
        the next call (with the truncated set's version) reports them.
        """
        retrieval = Retrieval(self.sim)
        filter_updates = []
        budget = limit
        truncated = False
        if full:
            for flt in state.filters.values():
                flt.reported = {}
        for flt in list(state.filters.values()):
            objects, _missing = retrieval.select(flt.spec)
            current: dict[str, tuple[ManagedObject, dict[str, Any]]] = {}
            for obj in objects:
                paths = retrieval.paths_for(obj, flt.spec.propSet)
                if paths is None:
                    continue
                current[obj.moid] = (obj, retrieval.values(obj, paths))
            object_updates = []
            for moid, (obj, vals) in current.items():
                prints = {p: _fingerprint(v) for p, v in vals.items()}
                before = flt.reported.get(moid)
                if budget is not None and len(object_updates) >= budget \
                        and before != prints:
                    truncated = True
                    continue
                if before is None:
                    changes = [PC.Change(name=p, op="assign", val=v) for p, v in vals.items()]
                    object_updates.append(PC.ObjectUpdate(kind="enter", obj=obj.ref,
                                                           changeSet=changes))
                else:
                    changes = [PC.Change(name=p, op="assign", val=vals[p])
                               for p in vals if before.get(p) != prints[p]]
                    changes += [PC.Change(name=p, op="remove") for p in before if p not in vals]
                    if changes:
                        object_updates.append(PC.ObjectUpdate(kind="modify", obj=obj.ref,
                                                               changeSet=changes))
                flt.reported[moid] = prints
            for moid in [m for m in flt.reported if m not in current]:
                if budget is not None and len(object_updates) >= budget:
                    truncated = True
                    break
                ref = flt.refs.get(moid) or VmomiSupport.ManagedObject(moid)
                del flt.reported[moid]
                object_updates.append(PC.ObjectUpdate(kind="leave", obj=ref))
            flt.refs = {moid: current[moid][0].ref if moid in current else flt.refs.get(moid)
                        for moid in flt.reported}
            if object_updates:
                filter_updates.append(PC.FilterUpdate(filter=flt.ref, objectSet=object_updates))
                if budget is not None:
                    budget -= len(object_updates)
        return filter_updates, truncated

    def _wait(self, ctx: CallContext, version: str | None, max_wait: float | None,
              limit: int | None = None):
        state = self._state(ctx)
        deadline = time.monotonic() + (max_wait if max_wait is not None else _MAX_WAIT_FOREVER)
        full = not version
        registry = self.sim.registry
        with registry.lock:
            # Documented: "" or a version this collector returned on this session.
            if version and not (version.isdigit() and int(version) <= state.version):
                raise vmodl.query.InvalidCollectorVersion(
                    msg=f"The collector version {version!r} is not valid")
            state.cancel_wait = False
            while True:
                updates, truncated = self._updates(state, full, limit)
                full = False
                if updates:
                    state.version += 1
                    return PC.UpdateSet(version=str(state.version), filterSet=updates,
                                        truncated=truncated or None)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                registry.changed.wait(min(remaining, 1.0))
                if state.released:
                    raise vim.fault.NotAuthenticated(
                        msg="The session was logged out or expired during the wait.",
                        privilegeId="System.View")
                if state.cancel_wait:
                    state.cancel_wait = False
                    raise vmodl.fault.RequestCanceled(msg="The request was canceled")

    def WaitForUpdatesEx(self, ctx: CallContext, version=None, options=None):  # noqa: N802
        max_wait = None
        limit = None
        if options is not None and options.maxWaitSeconds is not None:
            max_wait = float(options.maxWaitSeconds)
        if options is not None and options.maxObjectUpdates:
            if options.maxObjectUpdates < 0:
                raise invalid_argument("options.maxObjectUpdates")
            limit = int(options.maxObjectUpdates)
        return self._wait(ctx, version, max_wait, limit)

    def WaitForUpdates(self, ctx: CallContext, version=None):  # noqa: N802
        return self._wait(ctx, version, None)

    def CheckForUpdates(self, ctx: CallContext, version=None):  # noqa: N802
        return self._wait(ctx, version, 0.0)

    def CancelWaitForUpdates(self, ctx: CallContext) -> None:  # noqa: N802
        with self.sim.registry.lock:
            self._state(ctx).cancel_wait = True
            self.sim.registry.changed.notify_all()
