"""An instance's DRS rules in vCenter: its server group's VM-VM rule and its host-group pin.

Spawn, resize and live migration add a VM to the rules of the cluster it
arrives in, destroy and the moves away take it out; this is the one place
that does so (the rules themselves are edited by ``vsphere/rules.py``).
"""

from __future__ import annotations

from nova import exception, objects
from oslo_log import log as logging
from oslo_vmware import vim_util

from nova_vsphere_driver import extra_specs, policy
from nova_vsphere_driver.services import ClusterStates, Nodes
from nova_vsphere_driver.vsphere.cluster_state import ClusterRef
from nova_vsphere_driver.vsphere.rules import (
    HOST_GROUP_PREFIX,
    ClusterRules,
    host_group_rule_name,
)

LOG = logging.getLogger(__name__)


def server_group(context, instance):
    """The instance's Nova server group, or None."""
    try:
        return objects.InstanceGroup.get_by_instance_uuid(context, instance.uuid)
    except exception.InstanceGroupNotFound:
        return None


class InstanceRules:
    """Keeps instances' VMs in their DRS rules, cluster by cluster."""

    def __init__(self, rules: ClusterRules, states: ClusterStates, nodes: Nodes,
                 instance_vm_group: str | None = None) -> None:
        self._rules = rules
        self._states = states
        self._nodes = nodes
        #: The operator's VM group every instance joins ([vsphere_drs] instance_vm_group).
        self._instance_vm_group = instance_vm_group

    def sync_group(self, ref: ClusterRef, instance, group) -> None:
        """Make the server group's DRS rule in ``ref`` hold its members there (idempotent).

        Members are found in a fresh read of the cluster, so spawns of one
        group racing each other all end up in the rule.
        """
        wanted = policy.group_rule(group)
        if wanted is None:
            return
        affinity, mandatory = wanted
        self._rules.sync_server_group(ref, group.uuid, set(group.members or ()) | {instance.uuid},
                                      affinity, mandatory, self._states.read_cluster)

    def pin(self, ref: ClusterRef, settings: extra_specs.FlavorSettings, vm_ref) -> None:
        """Keep the VM on its flavor's host group with a VM-Host rule in vCenter."""
        try:
            self._rules.pin_to_host_group(ref, settings.host_group,
                                          vim_util.get_moref_value(vm_ref),
                                          mandatory=settings.host_group_rule != "should")
        except LookupError as exc:
            raise exception.ComputeResourcesUnavailable(reason=str(exc)) from None

    def join_instance_group(self, ref: ClusterRef, vm_ref) -> None:
        """Add the VM to the operator's instance VM group of ``ref``, if there is one.

        Its must VM-Host rules then hold the VM in vCenter too (DRS, HA), as
        our DRS already placed it by them.
        """
        if self._instance_vm_group:
            self._rules.join_vm_group(ref, self._instance_vm_group,
                                      vim_util.get_moref_value(vm_ref))

    def join(self, ref: ClusterRef, instance, vm_ref, settings: extra_specs.FlavorSettings,
             group) -> None:
        """The VM arrives in ``ref`` (or its pin changed there): its group rule, its pin
        and the instance VM group."""
        self.sync_group(ref, instance, group)
        if settings.host_group:
            self.pin(ref, settings, vm_ref)
        self.join_instance_group(ref, vm_ref)

    def unpin(self, ref: ClusterRef, vm_moref: str) -> None:
        """Take the VM out of our rules in ``ref`` before its pin changes.

        vCenter refuses to move a VM against a "must" VM-Host rule; errors
        reach the caller, which must not move the VM then.
        """
        self._rules.prune(ref, {vm_moref})

    def pin_changes(self, ref: ClusterRef, vm_moref: str,
                    settings: extra_specs.FlavorSettings) -> bool:
        """Whether the VM's host-group pins in ``ref`` differ from what ``settings`` ask."""
        _, groups = self._rules.read(ref)
        current = {g.name for g in groups if g.kind == "vm"
                   and g.name.startswith(HOST_GROUP_PREFIX) and vm_moref in g.members}
        wanted = {host_group_rule_name(settings.host_group)} if settings.host_group else set()
        return current != wanted

    def prune(self, ref: ClusterRef, vm_moref: str) -> None:
        """The VM is gone from ``ref``: drop it from our rules there (a rule goes with its
        last member). Failures are logged: a stale rule is fixed with the next change."""
        try:
            self._rules.prune(ref, {vm_moref})
        except Exception as exc:  # the VM is gone; a stale rule is fixed next time
            LOG.warning("Could not update the DRS rules of cluster %s: %s", ref.name, exc)

    def prune_managed(self, cluster_moref: str, vm_moref: str) -> None:
        """The VM left ``cluster_moref``: drop it from our rules there, if we manage it.

        vCenter already removed it from the cluster's groups and rules; pruning
        removes a server-group rule left with one member and an empty pin. A
        cluster of another nova-compute is left to vCenter and that service
        (editing it from here would race its own edits).
        """
        ref = self._nodes.managed(cluster_moref)
        if ref is not None:
            self.prune(ref, vm_moref)
