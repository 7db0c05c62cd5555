"""Host operations: ESXi maintenance mode with our DRS evacuating, uptime, enable/disable.

What ``host`` means here. Nova's os-hosts API resolves the name it is given
to a nova-compute *service* and passes that service's name on; this driver's
service stands for whole clusters. Maintenance of "the service" would be
maintenance of every ESXi host of every managed cluster, with nowhere for
the instances to go: that is refused (NotImplementedError, which the API
answers with 501). What maintenance means in vSphere -- one ESXi host,
emptied by DRS, then taken out of service -- is available by naming the ESXi
host (its inventory name or moref) to :meth:`HostOperations.maintenance_mode`;
tools that drive the driver directly use that.
"""

from __future__ import annotations

import datetime
import time

import nova.conf
from nova import exception
from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.cluster_state import (
    ENTER_MAINTENANCE,
    ClusterRef,
    EsxiHostState,
    moref_value,
    retrieve,
)
from nova_vsphere_driver.vsphere.session import TaskTimeout

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

ON_MAINTENANCE = "on_maintenance"
OFF_MAINTENANCE = "off_maintenance"
UPTIME_PROPS = ["name", "summary.quickStats.uptime", "runtime.bootTime",
                "runtime.connectionState", "runtime.inMaintenanceMode"]


class MaintenanceModeFailed(exception.NovaException):
    msg_fmt = "ESXi host %(host)s did not enter maintenance mode: %(reason)s"


def format_uptime(seconds: int) -> str:
    """``uptime``'s wording: "up 3 days, 4:05" (hours:minutes)."""
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    day_part = f"{days} day{'s' if days != 1 else ''}, " if days else ""
    return f"up {day_part}{hours}:{minutes:02d}"


class HostOperations:
    """Maintenance mode and uptime of the ESXi hosts of one driver's clusters (built once)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._session = services.session
        self._states = services.states
        self._nodes = services.nodes
        self._drs = services.drs

    # -- finding an ESXi host --------------------------------------------------------

    def _find(self, name: str) -> tuple[str, EsxiHostState]:
        """(nodename, host) of the ESXi host called (or with moref) ``name``."""
        found = [(nodename, h) for nodename in self._nodes
                 for h in self._states.read(nodename).hosts if name in (h.name, h.moref)]
        if len(found) > 1:
            raise exception.NovaException(
                message=f"{len(found)} ESXi hosts are called {name}: name one by its moref "
                f"({', '.join(h.moref for _, h in found)})")
        if found:
            return found[0]
        if name == CONF.host:
            hosts = sum(len(self._states.read(n).hosts) for n in self._nodes)
            raise NotImplementedError(
                f"nova-compute {name} manages the clusters "
                f"{', '.join(r.name for r in self._nodes.values())} ({hosts} ESXi hosts): "
                "maintenance of all of them leaves the instances nowhere to go. Name one "
                "ESXi host to put it in maintenance (our DRS evacuates it), or disable the "
                "service and live-migrate its instances to another nova-compute.")
        raise exception.HostNotFound(host=name)

    # -- maintenance mode ----------------------------------------------------------------

    def maintenance_mode(self, host: str, mode: bool) -> str:
        nodename, state = self._find(host)
        if mode:
            if state.in_maintenance:
                return ON_MAINTENANCE
            self._enter(nodename, state)
            return ON_MAINTENANCE
        if state.in_maintenance:
            LOG.info("ESXi host %s leaves maintenance mode", state.name)
            session = self._session
            with errors.translated():
                # timeout=0: vCenter's own bound (none); ours is the wait below.
                task = session.invoke("ExitMaintenanceMode_Task", self._ref(state), timeout=0)
                session.wait_for_task(task, timeout=CONF.vsphere.api_timeout)
        elif state.entering_maintenance:
            # "Leave maintenance" while entering it: stop entering.
            self._cancel_entering(state)
        return OFF_MAINTENANCE

    @staticmethod
    def _ref(state: EsxiHostState):
        return vim_util.get_moref(state.moref, "HostSystem")

    def _enter(self, nodename: str, state: EsxiHostState) -> None:
        """EnterMaintenanceMode_Task; in builtin mode our DRS empties the host meanwhile.

        vCenter keeps the task running until no VM is registered on the host
        (``evacuatePoweredOffVms``: stopped instances must leave too, or they
        could not start again). With vCenter's DRS in charge it moves them
        itself; otherwise our DRS plans and runs the vMotions. A VM that
        cannot go anywhere cancels the task: the host stays in service.
        """
        session = self._session
        ref = self._ref(state)
        LOG.info("ESXi host %s enters maintenance mode", state.name)
        with errors.translated():
            task = session.invoke("EnterMaintenanceMode_Task", ref, timeout=0,
                                  evacuatePoweredOffVms=True)
        deadline = time.monotonic() + CONF.vsphere.api_timeout
        builtin = CONF.vsphere_drs.mode == "builtin"
        while True:
            with errors.translated():
                info = session.call("get_object_property", task, "info")
            if str(info.state) == "success":
                return
            if str(info.state) == "error":
                fault = vexc.translate_fault(info.error)
                raise MaintenanceModeFailed(host=state.name,
                                            reason=errors.to_nova(fault).format_message())
            if builtin:
                self._evacuate(nodename, state, task)
            if time.monotonic() >= deadline:
                self._cancel(task)
                raise MaintenanceModeFailed(
                    host=state.name, reason=f"still not empty after "
                    f"{CONF.vsphere.api_timeout:.0f} s; entering was cancelled")
            time.sleep(session.task_poll_interval)

    def _evacuate(self, nodename: str, host: EsxiHostState, task) -> None:
        state = self._states.read(nodename)
        current = state.host(host.moref)
        if current is None or not current.entering_maintenance:
            return  # the task is still queued
        limits = self._services.limits()
        report = self._drs.evacuate(state, limits)
        if report is None:
            return
        problems = list(report.unresolved) + [
            f"{o.move.vm_name or o.move.vm}: vMotion failed: {o.error}" for o in report.failed]
        if problems:
            self._cancel(task)
            raise MaintenanceModeFailed(host=host.name, reason="; ".join(problems))

    def _cancel(self, task) -> None:
        """Cancel entering maintenance and wait until vCenter has stopped it."""
        session = self._session
        try:
            session.invoke("CancelTask", task)
            session.wait_for_task(task, timeout=CONF.vsphere.api_timeout)
        except (vexc.VMwareDriverException, TaskTimeout) as exc:
            # Cancelled (RequestCanceled) is the expected end of the task.
            if "RequestCanceled" not in errors.fault_names(exc):
                LOG.warning("Cancelling entering maintenance mode: %s", exc)

    def _cancel_entering(self, state: EsxiHostState) -> None:
        session = self._session
        with errors.translated():
            tasks = session.call("get_object_property", self._ref(state), "recentTask")
        for task in list(getattr(tasks, "ManagedObjectReference", None) or tasks or []):
            with errors.translated():
                info = session.call("get_object_property", task, "info")
            if info.descriptionId == ENTER_MAINTENANCE and \
                    str(info.state) in ("queued", "running"):
                LOG.info("ESXi host %s: entering maintenance mode cancelled", state.name)
                self._cancel(task)

    # -- uptime --------------------------------------------------------------------------

    def uptime(self) -> str:
        """One line per ESXi host: "<cluster>/<host> up 3 days, 4:05" (sorted)."""
        clusters = {ref.moref: ref for ref in self._nodes.values()}
        lines = []
        with errors.translated():
            objects = list(retrieve(self._session, self._uptime_spec(list(clusters.values())),
                                    CONF.vsphere.maximum_objects))
        now = datetime.datetime.now(datetime.timezone.utc)
        by_host = {moref_value(o.obj): {p.name: p.val for p in (o.propSet or [])}
                   for o in objects if vim_util.get_moref_type(o.obj) == "HostSystem"}
        cluster_of = {}
        for o in objects:
            if vim_util.get_moref_type(o.obj) != "ClusterComputeResource":
                continue
            for prop in o.propSet or []:
                hosts = getattr(prop.val, "ManagedObjectReference", None) or []
                for h in hosts:
                    cluster_of[moref_value(h)] = clusters[moref_value(o.obj)].name
        for moref, props in by_host.items():
            name = f"{cluster_of.get(moref, '?')}/{props.get('name', moref)}"
            if str(props.get("runtime.connectionState")) != "connected":
                lines.append(f"{name} not responding")
                continue
            seconds = props.get("summary.quickStats.uptime")
            if seconds is None and props.get("runtime.bootTime") is not None:
                seconds = (now - props["runtime.bootTime"]).total_seconds()
            text = format_uptime(seconds) if seconds is not None else "uptime unknown"
            if props.get("runtime.inMaintenanceMode"):
                text += " (maintenance mode)"
            lines.append(f"{name} {text}")
        return "\n".join(sorted(lines))

    def _uptime_spec(self, clusters: list[ClusterRef]):
        factory = self._session.vim.client.factory
        to_hosts = vim_util.build_traversal_spec(factory, "clusterHosts",
                                                 "ClusterComputeResource", "host", False, [])
        return vim_util.build_property_filter_spec(
            factory,
            [vim_util.build_property_spec(factory, "ClusterComputeResource", ["host"]),
             vim_util.build_property_spec(factory, "HostSystem", UPTIME_PROPS)],
            [vim_util.build_object_spec(factory, ref.ref(), [to_hosts]) for ref in clusters])


#: Why set_host_enabled raises NotImplementedError: Nova already does what
#: "disable" can mean for this driver.
SET_HOST_ENABLED_UNSUPPORTED = (
    "nova 34's compute manager itself adds (or removes) the COMPUTE_STATUS_DISABLED "
    "trait on every compute node of this service -- every managed cluster -- and the "
    "scheduler filters on it; vCenter has no switch of its own to add for a whole "
    "nova-compute. Use ESXi host maintenance mode to take single hosts out of service.")
