"""PropertyCollector: retrieval with traversal and paging, filters, updates."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape as xml_escape

from pyVmomi import VmomiSupport, vim, vmodl

from nova_vsphere_driver.simulator import soap, wire_cache
from nova_vsphere_driver.simulator.objects import property_path
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


def _targets(registry, value: Any) -> list[ManagedObject]:
    """The existing objects a traversed property value refers to."""
    return [registry.get(ref._moId, ref) for ref in _as_list(value)
            if isinstance(ref, VmomiSupport.ManagedObject) and ref._moId in registry]


class Retrieval:
    """Evaluates FilterSpecs against the registry (call with the lock held)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def select(self, spec: PC.FilterSpec, edges: dict[str, dict[str, tuple[str, ...]]]
               | None = None, report_missing: bool = False) -> tuple[list[ManagedObject], list]:
        """Objects a filter spec selects, in order, and the missing ones.

        ``edges``, when given, receives what the selection depends on: for
        each object traversed from, each path followed and the moids it led
        to. ``report_missing``: a start object that is gone is returned as
        missing instead of faulting (as filters report it).

        Specs and traversals are walked with explicit stacks, not recursion:
        neither a deeply nested spec nor a long chain of named specs over a
        deep inventory reaches Python's recursion limit.
        """
        # Named specs, first definition in document order (a depth-first walk).
        named: dict[str, PC.TraversalSpec] = {}
        specs = [iter(ospec.selectSet or ()) for ospec in reversed(spec.objectSet)]
        while specs:
            ss = next(specs[-1], None)
            if ss is None:
                specs.pop()
            elif isinstance(ss, PC.TraversalSpec) and ss.name not in named:
                if ss.name:
                    named[ss.name] = ss
                specs.append(iter(ss.selectSet or ()))

        registry = self.sim.registry
        selected: dict[str, ManagedObject] = {}
        missing = []
        visited: set[tuple[str, int]] = set()

        def expand(obj: ManagedObject, select_set):
            """(target, spec) for each object one step of ``select_set`` reaches from ``obj``."""
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
                targets = _targets(registry, obj.get_property(tspec.path))
                if edges is not None:
                    edges.setdefault(obj.moid, {})[tspec.path] = tuple(t.moid for t in targets)
                for target in targets:
                    yield target, tspec

        for ospec in spec.objectSet:
            ref = ospec.obj
            if ref is None or ref._moId not in registry:
                if spec.reportMissingObjectsInResults or report_missing:
                    missing.append(ref)
                    continue
                raise vmodl.fault.ManagedObjectNotFound(
                    obj=ref, msg=f"The object '{getattr(ref, '_moId', ref)}' has already been "
                    "deleted or has not been completely created")
            # By its id, whatever the reference's type: a PropertySpec of another
            # type then selects nothing of it (an empty answer, not a fault).
            obj = registry.get(ref._moId)
            if not ospec.skip:
                selected.setdefault(obj.moid, obj)
            stack = [expand(obj, ospec.selectSet)]
            while stack:
                step = next(stack[-1], None)
                if step is None:
                    stack.pop()
                    continue
                target, tspec = step
                if not tspec.skip:
                    selected.setdefault(target.moid, target)
                stack.append(expand(target, tspec.selectSet))
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

    def validate(self, spec: PC.FilterSpec) -> None:
        """Fault as RetrieveProperties of ``spec`` would, without computing values.

        Start objects must exist and paths must be properties of the type
        model; both are checked once per class. A path through a subtype's
        property (``compile_path`` cannot check it before it has a value) is
        resolved on every selected object of the class, as a read would.
        """
        objects, _ = self.select(spec)
        unchecked: dict[type, list[str]] = {}
        for obj in objects:
            cls = type(obj)
            paths = unchecked.get(cls)
            if paths is None:
                paths = unchecked[cls] = [
                    path for path in self.paths_for(obj, spec.propSet) or ()
                    if not all(checked for _name, _key, checked
                               in property_path.compile_path(obj.vim_type, path))]
            for path in paths:
                obj.get_property(path)

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
            # What a spec asks depends on the object's class only.
            by_class: dict[type, tuple[str, ...] | None] = {}
            for obj in objects:
                cls = type(obj)
                if cls in by_class:
                    paths = by_class[cls]
                else:
                    found = self.paths_for(obj, spec.propSet)
                    paths = by_class[cls] = tuple(found) if found is not None else None
                if paths is None:
                    continue
                entry = gathered.get(obj.moid)
                if entry is None:
                    gathered[obj.moid] = (obj, paths)
                else:
                    gathered[obj.moid] = (obj, entry[1] + tuple(
                        p for p in paths if p not in entry[1]))
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
        per version of the object's state (``wire_cache``: the values cannot
        change within one) and reused by every read and every filter update
        until then: a read of unchanged objects only joins strings.
        """
        out = []
        for obj, paths in self._gather(specs):
            if obj is None:  # paths: the missing object's reference
                content = self._missing_content(paths)
                out.append(soap.encode_reference(content.obj, "obj") + "".join(
                    soap.encode_element(m, "missingSet", PC.MissingProperty)
                    for m in content.missingSet))
                continue
            if any(path.partition(".")[0] in obj.uncached for path in paths):
                out.append(self._encode_content(obj, paths))
            else:  # the whole ObjectContent, as often read again as its parts
                out.append(wire_cache.fragment(obj, ("content", paths),
                                               lambda o=obj, p=paths: self._encode_content(o, p)))
        return out

    def _encode_content(self, obj: ManagedObject, paths: tuple[str, ...]) -> str:
        return self.ref_wire(obj) + "".join(self.wire(obj, path) for path in paths)

    def wire(self, obj: ManagedObject, path: str) -> str:
        """The ``propSet`` element of ``path`` ("" when unset), cached while it cannot change."""
        if path.partition(".")[0] in obj.uncached:  # the caller's own (currentSession)
            return self._encode_property(obj, path)
        return wire_cache.fragment(obj, ("propSet", path),
                                   lambda: self._encode_property(obj, path))

    @staticmethod
    def ref_wire(obj: ManagedObject) -> str:
        """``<obj type="...">moid</obj>``: an ObjectContent's or ObjectUpdate's ``obj``."""
        return soap.encode_reference(obj.ref, "obj")

    @staticmethod
    def _encode_property(obj: ManagedObject, path: str) -> str:
        value = obj.get_property(path)
        if value is None:  # vCenter omits unset properties
            return ""
        return soap.encode_property(path, typed(value, declared_type(obj.vim_type, path)))


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
    """A filter and what it last reported, which its next updates are the difference to.

    Updates come from the registry's change log: only objects changed since
    the filter's last report are compared (O(changes), as on vCenter), and
    the selection is walked again only when something it was traversed
    through changed (a view's members, a host's datastores). When the log
    cannot say what changed, every selected object is compared.
    """

    vim_type = vmodl.query.PropertyCollector.Filter
    moid_prefix = "filter"

    def __init__(self, sim: Simulator, collector: PropertyCollector, state: _SessionState,
                 spec, partial: bool) -> None:
        super().__init__(sim, f"session[{uuid.uuid4()}]{uuid.uuid4().hex[:8]}")
        self.collector = collector
        self.state = state
        self.spec = spec
        self.partial = partial
        #: Registry generation the report is current to (0: nothing reported).
        self.generation = 0
        #: The selection when last walked, in order; what it was traversed
        #: through (moid -> {path: target moids}); start objects found missing.
        self.selected: dict[str, ManagedObject] = {}
        self.edges: dict[str, dict[str, tuple[str, ...]]] = {}
        self.missing: dict[str, Any] = {}
        self.reported_missing: set[str] = set()
        # moid -> {path: the value's propSet fragment}, as last reported to the client.
        self.reported: dict[str, dict[str, str]] = {}
        # moid -> typed reference of each reported object ("leave" names it
        # even once the object is gone from the registry).
        self.refs: dict[str, Any] = {}
        #: Objects a truncated update set left out: compared in the next one.
        self.pending: dict[str, None] = {}
        self._paths: dict[type, list[str] | None] = {}

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

    def forget_reported(self) -> None:
        """Start over: the next updates report every object as entering."""
        self.generation = 0
        self.reported = {}
        self.refs = {}
        self.pending = {}
        self.missing = {}
        self.reported_missing = set()

    # -- updates (call with the registry lock held) ------------------------------------

    def updates(self, budget: int | None) -> tuple[list[str], list[str], bool]:
        """(ObjectUpdates, newly missing start objects, truncated) since the last call,
        each ObjectUpdate and MissingObject in wire form (its inner XML).

        ``budget`` bounds the object updates; objects left out are kept
        pending and reported by the next call. Property values are the
        fragments RetrieveProperties sends (one cached wire form per value,
        ``Retrieval.wire``), and what the filter remembers of each is that
        fragment: equal XML, equal value.
        """
        registry = self.sim.registry
        changed = registry.changes_since(self.generation) if self.generation else None
        self.generation = registry.generation
        if changed is None:
            self._select()
            candidates = dict.fromkeys([*self.pending, *self.selected, *self.reported])
        else:
            if not changed and not self.pending:
                return [], [], False
            candidates = dict(self.pending)
            if self._selection_changed(changed):
                before = self.selected
                self._select()
                candidates.update(dict.fromkeys(
                    [m for m in self.selected if m not in before] +
                    [m for m in before if m not in self.selected]))
            candidates.update(dict.fromkeys(
                m for m in changed if m in self.selected or m in self.reported))
        object_updates = []
        left: dict[str, None] = {}
        retrieval = Retrieval(self.sim)
        for moid in candidates:
            if budget is not None and len(object_updates) >= budget:
                left[moid] = None
                continue
            update = self._object_update(moid, retrieval)
            if update is not None:
                object_updates.append(update)
        self.pending = left
        missing = [soap.encode_element(
            PC.MissingObject(obj=ref, fault=vmodl.fault.ManagedObjectNotFound(obj=ref)),
            "missingSet", PC.MissingObject)
            for moid, ref in self.missing.items() if moid not in self.reported_missing]
        self.reported_missing = set(self.missing)
        return object_updates, missing, bool(left)

    def _select(self) -> None:
        edges: dict[str, dict[str, tuple[str, ...]]] = {}
        objects, missing = Retrieval(self.sim).select(self.spec, edges, report_missing=True)
        self.selected = {obj.moid: obj for obj in objects}
        self.edges = edges
        self.missing = {ref._moId: ref for ref in missing if ref is not None}

    def _selection_changed(self, changed: set[str]) -> bool:
        """Did a change alter what the filter selects? (Walking again is O(selection).)"""
        registry = self.sim.registry
        for moid in changed:
            followed = self.edges.get(moid)
            if followed is None:
                if moid in self.selected and moid not in registry:
                    return True  # a selected object is gone
                continue
            if moid not in registry:
                return True
            obj = registry.get(moid)
            for path, before in followed.items():
                if tuple(t.moid for t in _targets(registry, obj.get_property(path))) != before:
                    return True
        return any(m in registry for m in self.missing)

    def _paths_of(self, obj: ManagedObject) -> list[str] | None:
        kind = obj.vim_type
        if kind not in self._paths:
            self._paths[kind] = Retrieval.paths_for(obj, self.spec.propSet)
        return self._paths[kind]

    def _object_update(self, moid: str, retrieval: Retrieval) -> str | None:
        """The ObjectUpdate (inner XML) that brings the client's copy of ``moid`` up to
        date, or None."""
        before = self.reported.get(moid)
        obj = self.selected.get(moid)
        paths = self._paths_of(obj) if obj is not None else None
        if obj is None or paths is None:
            if before is None:
                return None
            del self.reported[moid]
            ref = self.refs.pop(moid, None) or VmomiSupport.ManagedObject(moid)
            return "<kind>leave</kind>" + soap.encode_reference(ref, "obj")
        prints: dict[str, str] = {}
        changes = []
        for path in paths:
            fragment = retrieval.wire(obj, path)
            if not fragment:  # unset: vCenter omits it
                continue
            prints[path] = fragment
            if before is None or before.get(path) != fragment:
                changes.append(_assignment(fragment))
        self.reported[moid] = prints
        head = retrieval.ref_wire(obj)
        if before is None:
            self.refs[moid] = obj.ref
            return "<kind>enter</kind>" + head + "".join(changes)
        changes += [f"<changeSet><name>{xml_escape(p)}</name><op>remove</op></changeSet>"
                    for p in before if p not in prints]
        if not changes:
            return None
        return "<kind>modify</kind>" + head + "".join(changes)


def _assignment(fragment: str) -> str:
    """A ``<propSet>`` fragment as the ``<changeSet>`` assigning that value."""
    name_end = fragment.index("</name>") + len("</name>")
    return ("<changeSet>" + fragment[len("<propSet>"):name_end] + "<op>assign</op>"
            + fragment[name_end:-len("</propSet>")] + "</changeSet>")


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
            self.sim.registry.wake()  # a wait of that session ends

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
            # No values are computed: the filter's own registration is a
            # change that would outdate them before the first update.
            Retrieval(self.sim).validate(spec)
            return self.sim.factory.property_filter(self, self._state(ctx), spec,
                                                    partialUpdates).ref

    # -- updates ------------------------------------------------------------

    def _updates(self, state: _SessionState, full: bool, limit: int | None = None):
        """The FilterUpdates since the last report, and whether ``limit`` cut them short.

        Objects left out by the limit stay pending in their filter, so the
        next call (with the truncated set's version) reports them.
        """
        filter_updates = []
        budget = limit
        truncated = False
        for flt in list(state.filters.values()):
            if full:
                flt.forget_reported()
            object_updates, missing, cut = flt.updates(budget)
            truncated = truncated or cut
            if object_updates or missing:
                filter_updates.append(
                    "<filterSet>" + soap.encode_reference(flt.ref, "filter")
                    + "".join(f"<objectSet>{u}</objectSet>" for u in object_updates)
                    + "".join(missing) + "</filterSet>")
            if budget is not None:
                budget = max(budget - len(object_updates), 0)
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
                    # An UpdateSet, in wire form.
                    return soap.Encoded(
                        f"<returnval><version>{state.version}</version>" + "".join(updates)
                        + ("<truncated>true</truncated>" if truncated else "") + "</returnval>")
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
                if self.sim.waits_ended:
                    raise vmodl.fault.RequestCanceled(msg="The server is shutting down")

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
