"""The ESXi host of a cluster an instance goes to, chosen (and claimed) by our DRS."""

from __future__ import annotations

from nova import exception
from oslo_log import log as logging

from nova_vsphere_driver import policy
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere.cluster_state import ClusterState, EsxiHostState

LOG = logging.getLogger(__name__)


class HostSelection:
    """Initial placement of instances on ESXi hosts through the DRS runtime."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def place(self, state: ClusterState, instance, group, stores,
              host_group: str | None) -> EsxiHostState:
        """The ESXi host for ``instance`` in ``state``, claimed for it until released.

        ``stores``: the datastores its files may go to (the host must mount
        one). ComputeResourcesUnavailable (Nova may reschedule) when none fits.
        """
        request = policy.placement_request(instance, group, host_group,
                                           any_datastore=frozenset(d.moref for d in stores))
        services = self._services
        result = services.drs.place(state, request, services.limits())
        if not result.ok:
            raise exception.ComputeResourcesUnavailable(
                reason=f"cluster {state.ref.name}: {result.reason}")
        LOG.info("Placing instance on ESXi host %s: %s", result.host_name, result.reason,
                 instance=instance)
        return state.host(result.host_id)
