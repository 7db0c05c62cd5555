"""Nova scheduler filters for clusters managed by this driver.

Load them into nova-scheduler *after* Nova's own filters, so that they take
the place of Nova's classes of the same name::

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = nova_vsphere_driver.scheduler_filters.ServerGroupAntiAffinityFilter

(the scheduler keys filters by class name, the last one listed wins; Nova's
API keeps finding "ServerGroupAntiAffinityFilter" in ``enabled_filters`` and
accepts anti-affinity groups).
"""

from __future__ import annotations

from nova.scheduler.filters import affinity_filter

from nova_vsphere_driver import HYPERVISOR_TYPE


class ServerGroupAntiAffinityFilter(affinity_filter.ServerGroupAntiAffinityFilter):
    """Nova's anti-affinity filter, leaving vSphere clusters to the driver's DRS.

    Nova counts a group's members per nova-compute service; here one service
    manages whole clusters, and anti-affinity is about their ESXi hosts. The
    driver places the members on different ESXi hosts under a mandatory
    vCenter DRS rule and fails the build (Nova reschedules) when no host of
    the cluster can take one more, so the scheduler must not stop at one
    member per service. Other hypervisors get Nova's behaviour unchanged.
    """

    def host_passes(self, host_state, spec_obj) -> bool:
        if host_state.hypervisor_type == HYPERVISOR_TYPE:
            return True
        return super().host_passes(host_state, spec_obj)
