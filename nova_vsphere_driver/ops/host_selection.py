"""The ESXi host of a cluster an instance goes to, chosen (and claimed) by our DRS."""

from __future__ import annotations

import dataclasses

from nova import exception
from oslo_log import log as logging

from nova_vsphere_driver import drs, policy
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere.cluster_state import ClusterState, EsxiHostState, GroupState

LOG = logging.getLogger(__name__)


class GroupRuleUnsatisfiable(exception.ComputeResourcesUnavailable):
    """A must anti-affinity group of the instance has a member on every usable host
    the instance may use: no capacity would help (``rule`` names the group's rule)."""

    def __init__(self, reason: str, rule: str) -> None:
        super().__init__(reason=reason)
        self.rule = rule


class HostSelection:
    """Initial placement of instances on ESXi hosts through the DRS runtime."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def place(self, state: ClusterState, instance, group, stores,
              host_group: str | None, required: frozenset[str] = frozenset(),
              eligible: frozenset[str] | None = None) -> EsxiHostState:
        """The ESXi host for ``instance`` in ``state``, claimed for it until released.

        ``stores``: the datastores its files may go to (the host must mount
        one); ``required``: datastores (morefs) the host must mount all of (its
        volumes'); ``eligible``: the only hosts its flavor allows
        (:func:`~nova_vsphere_driver.policy.eligible_hosts`; None: any).
        ComputeResourcesUnavailable (Nova may reschedule) when none fits;
        GroupRuleUnsatisfiable, one of them, when its anti-affinity group
        already fills every host it may use.
        """
        pins: tuple[drs.HostPin, ...] = ()
        if eligible is not None:
            # Our DRS honours host groups (must pins) everywhere -- placement,
            # making room, crowded anti-affinity: the eligible hosts become one
            # for this placement only (vCenter never sees it).
            name = f"hosts flavor {instance.flavor.name} can use"
            taken = {g.name for g in state.groups}
            while name in taken:
                name += "'"
            state = dataclasses.replace(state, groups=(*state.groups, GroupState(
                name=name, kind="host", members=tuple(sorted(eligible)))))
            pins = (drs.HostPin(name),)
        request = policy.placement_request(instance, group, host_group,
                                           any_datastore=frozenset(d.moref for d in stores),
                                           datastores=required, host_pins=pins)
        services = self._services
        result = services.drs.place(state, request, services.limits())
        if not result.ok:
            reason = f"cluster {state.ref.name}: {result.reason}"
            if result.unsatisfiable_rule is not None:
                raise GroupRuleUnsatisfiable(reason, result.unsatisfiable_rule)
            raise exception.ComputeResourcesUnavailable(reason=reason)
        LOG.info("Placing instance on ESXi host %s: %s", result.host_name, result.reason,
                 instance=instance)
        return state.host(result.host_id)

    def place_new(self, state: ClusterState, instance, group, stores,
                  host_group: str | None, required: frozenset[str] = frozenset(),
                  eligible: frozenset[str] | None = None) -> EsxiHostState:
        """:meth:`place` for a new instance, refusing a crowded anti-affinity group
        as what it is to Nova: a server group policy violation.

        Nova then reschedules the build by policy (to another cluster, if the
        scheduler offers one) without counting a failed build against this
        nova-compute -- which would weigh down every cluster it manages --
        and the fault names the group's rule and why. No VM exists yet.
        """
        try:
            return self.place(state, instance, group, stores, host_group, required, eligible)
        except GroupRuleUnsatisfiable as exc:
            LOG.warning("Refusing the instance: %s", exc.kwargs["reason"], instance=instance)
            raise exception.GroupAffinityViolation(
                message=exc.kwargs["reason"], instance_uuid=instance.uuid,
                policy="Anti-affinity") from None
