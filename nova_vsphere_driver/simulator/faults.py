"""Fault injection: make the simulator misbehave on purpose, from Python or HTTP."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from pyVmomi import VmomiSupport, vmodl

from nova_vsphere_driver.simulator.vim_data import complete


def make_fault(name: str, message: str | None = None, **fields: Any) -> vmodl.MethodFault:
    """Build a vim fault by its wsdl name (``InvalidState``) or dotted name."""
    try:
        cls = VmomiSupport.GetWsdlType("urn:vim25", name)
    except KeyError:
        try:
            cls = VmomiSupport.GetVmodlType(name)
        except (KeyError, AttributeError):
            raise ValueError(f"unknown vim fault type {name!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, vmodl.MethodFault)):
        raise ValueError(f"{name!r} is not a vim fault type")
    fault = cls(**fields)
    fault.msg = message or f"injected fault {cls._wsdlName}"
    return fault


def complete_fault(fault: vmodl.MethodFault, target: Any = None) -> vmodl.MethodFault:
    """Fill the required fields an injected fault was built without.

    vCenter never sends a fault missing its required fields, and pyVmomi
    will not serialize one. A required managed object reference becomes
    ``target`` (the object the call was made on) when its type fits, else a
    placeholder reference of the declared type.
    """
    for prop in type(fault)._GetPropertyList():
        if prop.flags & VmomiSupport.F_OPTIONAL or getattr(fault, prop.name, None) is not None:
            continue
        if isinstance(prop.type, type) and issubclass(prop.type, VmomiSupport.ManagedObject):
            ref = target if isinstance(target, prop.type) else \
                prop.type(f"{prop.type._wsdlName.lower()}-0")
            setattr(fault, prop.name, ref)
    return complete(fault)


@dataclasses.dataclass
class _Failure:
    fault: vmodl.MethodFault
    remaining: int


class FaultInjector:
    """Rules the dispatcher and task runner consult on every call.

    * ``fail_next(method, fault, count)``: the next ``count`` calls of
      ``method`` fail with ``fault``. For ``*_Task`` methods the task is
      created and ends in error (as vCenter reports most failures); pass
      ``in_call=True`` to fault the SOAP call itself instead.
    * ``add_latency(method, seconds)``: every call of ``method`` (``"*"``:
      all) takes that much longer; for tasks, the task stays running that long.
      ``queued=`` seconds keep a task queued before it starts running (as
      vCenter queues tasks behind others).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._call_failures: dict[str, list[_Failure]] = {}
        self._task_failures: dict[str, list[_Failure]] = {}
        self._latency: dict[str, float] = {}
        self._task_latency: dict[str, float] = {}
        self._queue_latency: dict[str, float] = {}
        self._expiries: dict[str, int] = {}

    def fail_next(self, method: str, fault: vmodl.MethodFault | str, count: int = 1,
                  in_call: bool = False) -> None:
        if isinstance(fault, str):
            fault = make_fault(fault)
        if count < 1:
            raise ValueError("count must be >= 1")
        table = self._task_failures if method.endswith("_Task") and not in_call \
            else self._call_failures
        with self._lock:
            table.setdefault(method, []).append(_Failure(fault, count))

    def add_latency(self, method: str, seconds: float, task: bool | None = None,
                    queued: float = 0.0) -> None:
        if seconds < 0 or queued < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            if queued:
                self._queue_latency[method] = queued
            if task or (task is None and method.endswith("_Task")):
                self._task_latency[method] = seconds
            else:
                self._latency[method] = seconds

    def expire_sessions_before(self, method: str, count: int = 1) -> None:
        """Expire every session just before the next ``count`` calls of ``method``.

        The call then fails with NotAuthenticated, as after an idle timeout or
        a vCenter restart between two calls of a client: it must log in again.
        """
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._expiries[method] = self._expiries.get(method, 0) + count

    def take_session_expiry(self, method: str) -> bool:
        with self._lock:
            left = self._expiries.get(method, 0)
            if not left:
                return False
            self._expiries[method] = left - 1
            return True

    def clear(self) -> None:
        with self._lock:
            self._call_failures.clear()
            self._task_failures.clear()
            self._latency.clear()
            self._task_latency.clear()
            self._queue_latency.clear()
            self._expiries.clear()

    @staticmethod
    def _take(table: dict[str, list[_Failure]], method: str) -> vmodl.MethodFault | None:
        for key in (method, "*"):
            queue = table.get(key)
            if queue:
                failure = queue[0]
                failure.remaining -= 1
                if failure.remaining <= 0:
                    queue.pop(0)
                return failure.fault
        return None

    def take_call_fault(self, method: str) -> vmodl.MethodFault | None:
        with self._lock:
            return self._take(self._call_failures, method)

    def take_task_fault(self, method: str) -> vmodl.MethodFault | None:
        with self._lock:
            return self._take(self._task_failures, method)

    def call_latency(self, method: str) -> float:
        with self._lock:
            return self._latency.get(method, self._latency.get("*", 0.0))

    def task_latency(self, method: str) -> float:
        with self._lock:
            return self._task_latency.get(method, self._task_latency.get("*", 0.0))

    def queue_latency(self, method: str) -> float:
        with self._lock:
            return self._queue_latency.get(method, self._queue_latency.get("*", 0.0))


__all__ = ["FaultInjector", "complete_fault", "make_fault"]
