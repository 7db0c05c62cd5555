"""DRS rules and groups in vCenter: Nova server groups and host-group pins.

The rules live in vCenter (ClusterConfigSpecEx through
ReconfigureComputeResource_Task) so that vCenter's own DRS and HA honour
them too, whoever moves the VMs. Every rule and group this driver owns
carries a name prefix; nothing else in the cluster configuration is ever
touched. Edits of one cluster are serialised and always start from a fresh
read of its configuration, so concurrent spawns do not lose members.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable

from oslo_log import log as logging
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.cluster_state import (
    ClusterRef,
    ClusterState,
    GroupState,
    RuleState,
    parse_groups,
    parse_rules,
)
from nova_vsphere_driver.vsphere.session import VSphereSession

LOG = logging.getLogger(__name__)

#: Rules made for Nova server groups: "nova-sg-<server group uuid>".
SERVER_GROUP_PREFIX = "nova-sg-"
#: VM groups and VM-Host rules pinning instances to a host group:
#: "nova-hg-<host group name>".
HOST_GROUP_PREFIX = "nova-hg-"
#: vCenter refuses VM-VM rules with fewer members.
MIN_RULE_MEMBERS = 2


def server_group_rule_name(group_uuid: str) -> str:
    return SERVER_GROUP_PREFIX + group_uuid


def host_group_rule_name(host_group: str) -> str:
    return HOST_GROUP_PREFIX + host_group


class ClusterRules:
    """Reads and edits the DRS rules/groups of clusters this driver manages."""

    def __init__(self, session: VSphereSession) -> None:
        self.session = session
        self._locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)
        self._guard = threading.Lock()

    def lock(self, cluster: ClusterRef) -> threading.Lock:
        with self._guard:
            return self._locks[cluster.moref]

    def read(self, cluster: ClusterRef) -> tuple[tuple[RuleState, ...], tuple[GroupState, ...]]:
        config = self.session.call("get_object_property", cluster.ref(), "configurationEx")
        return parse_rules(config), parse_groups(config)

    # -- spec building -----------------------------------------------------------------

    def _refs(self, morefs: Iterable[str]) -> list:
        return [vim_util.get_moref(m, "VirtualMachine") for m in sorted(set(morefs))]

    def _change(self, spec_type: str, operation: str, info=None, remove_key=None):
        """One entry of ClusterConfigSpecEx.rulesSpec or .groupSpec (an ArrayUpdateSpec)."""
        spec = self.session.factory(spec_type)
        spec.operation = operation
        if info is not None:
            spec.info = info
        if remove_key is not None:
            spec.removeKey = remove_key
        return spec

    def _rule_spec(self, operation: str, info=None, remove_key: int | None = None):
        return self._change("ClusterRuleSpec", operation, info, remove_key)

    def _group_spec(self, operation: str, info=None, remove_key: str | None = None):
        return self._change("ClusterGroupSpec", operation, info, remove_key)

    def _apply(self, cluster: ClusterRef, rules_spec=(), group_spec=()) -> None:
        if not rules_spec and not group_spec:
            return
        spec = self.session.factory("ClusterConfigSpecEx")
        spec.rulesSpec = list(rules_spec)
        spec.groupSpec = list(group_spec)
        self.session.run_task("ReconfigureComputeResource_Task", cluster.ref(), spec=spec,
                              modify=True)

    def _vm_vm_rule(self, name: str, members: set[str], affinity: bool, mandatory: bool,
                    key: int | None = None):
        info = self.session.factory("ClusterAffinityRuleSpec" if affinity
                                    else "ClusterAntiAffinityRuleSpec")
        info.name = name
        info.enabled = True
        info.mandatory = mandatory
        info.vm = self._refs(members)
        if key is not None:
            info.key = key
        return info

    # -- server groups -------------------------------------------------------------------

    def sync_server_group(self, cluster: ClusterRef, group_uuid: str,
                          member_uuids: Iterable[str], affinity: bool, mandatory: bool,
                          read_state: Callable[[ClusterRef], ClusterState]) -> None:
        """Make the group's VM-VM rule hold every member VM now in the cluster.

        Members are found in a fresh read of the cluster (taken under the
        cluster's lock), so spawns of the same group racing each other all
        end up in the rule. With fewer than two members there is nothing to
        enforce and vCenter would refuse the rule: it is removed (or never
        created).
        """
        name = server_group_rule_name(group_uuid)
        wanted = set(member_uuids)
        with self.lock(cluster):
            state = read_state(cluster)
            members = {vm.moref for vm in state.vms if vm.instance_uuid in wanted}
            existing = next((r for r in state.rules if r.name == name), None)
            if len(members) < MIN_RULE_MEMBERS:
                if existing is not None:
                    LOG.info("Removing DRS rule %s from cluster %s", name, cluster.name)
                    self._apply(cluster, [self._rule_spec("remove", remove_key=existing.key)])
                return
            kind = "affinity" if affinity else "anti-affinity"
            rule = self._vm_vm_rule(name, members, affinity, mandatory)
            if existing is None:
                LOG.info("Creating DRS %s rule %s in cluster %s for %d VMs", kind, name,
                         cluster.name, len(members))
                specs = [self._rule_spec("add", rule)]
            elif existing.kind != kind:
                specs = [self._rule_spec("remove", remove_key=existing.key),
                         self._rule_spec("add", rule)]
            elif set(existing.vms) == members and existing.mandatory == mandatory:
                return
            else:
                rule.key = existing.key
                specs = [self._rule_spec("edit", rule)]
            self._apply(cluster, specs)

    # -- host-group pins -----------------------------------------------------------------

    def pin_to_host_group(self, cluster: ClusterRef, host_group: str, vm_moref: str,
                          mandatory: bool) -> None:
        """Add the VM to our VM group for ``host_group`` and ensure the VM-Host rule."""
        name = host_group_rule_name(host_group)
        with self.lock(cluster):
            rules, groups = self.read(cluster)
            by_name = {g.name: g for g in groups}
            target = by_name.get(host_group)
            if target is None or target.kind != "host":
                raise LookupError(f"cluster {cluster.name} has no DRS host group "
                                  f"{host_group!r}")
            group_specs, rule_specs = [], []
            vm_group = by_name.get(name)
            members = set(vm_group.members if vm_group else ()) | {vm_moref}
            info = self.session.factory("ClusterVmGroup")
            info.name = name
            info.vm = self._refs(members)
            group_specs.append(self._group_spec("edit" if vm_group else "add", info))
            rule = next((r for r in rules if r.name == name), None)
            if rule is None or rule.mandatory != mandatory:
                spec = self.session.factory("ClusterVmHostRuleInfo")
                spec.name = name
                spec.enabled = True
                spec.mandatory = mandatory
                spec.vmGroupName = name
                spec.affineHostGroupName = host_group
                if rule is not None:
                    spec.key = rule.key
                rule_specs.append(self._rule_spec("edit" if rule else "add", spec))
            self._apply(cluster, rule_specs, group_specs)

    # -- the operator's VM group -------------------------------------------------------

    def join_vm_group(self, cluster: ClusterRef, vm_group: str, vm_moref: str) -> bool:
        """Add the VM to the operator's VM group ``vm_group`` of the cluster.

        The group and its rules are the operator's: only the membership
        changes. False (and nothing changed) when the cluster has no such VM
        group. vCenter drops the VM from the group itself when it leaves
        the cluster or is destroyed.
        """
        with self.lock(cluster):
            _, groups = self.read(cluster)
            group = next((g for g in groups if g.name == vm_group and g.kind == "vm"), None)
            if group is None:
                return False
            if vm_moref in group.members:
                return True
            info = self.session.factory("ClusterVmGroup")
            info.name = vm_group
            info.vm = self._refs(set(group.members) | {vm_moref})
            LOG.debug("Adding VM %s to VM group %s of cluster %s", vm_moref, vm_group,
                      cluster.name)
            self._apply(cluster, group_spec=[self._group_spec("edit", info)])
            return True

    # -- clean-up ----------------------------------------------------------------------

    def prune(self, cluster: ClusterRef, gone: set[str]) -> None:
        """Drop VMs in ``gone`` (destroyed or moved away) from our rules and groups.

        A server-group rule left with fewer than two VMs and a host-group pin
        left with no VM are removed with their groups: the rule goes with its
        last member.
        """
        with self.lock(cluster):
            rules, groups = self.read(cluster)
            rule_specs, group_specs = [], []
            for rule in rules:
                if not rule.name.startswith(SERVER_GROUP_PREFIX):
                    continue
                members = set(rule.vms) - gone
                if len(members) < MIN_RULE_MEMBERS:
                    LOG.info("Removing DRS rule %s from cluster %s: fewer than two members "
                             "left", rule.name, cluster.name)
                    rule_specs.append(self._rule_spec("remove", remove_key=rule.key))
                elif members != set(rule.vms):
                    rule_specs.append(self._rule_spec("edit", self._vm_vm_rule(
                        rule.name, members, rule.kind == "affinity", rule.mandatory,
                        key=rule.key)))
            for group in groups:
                if group.kind != "vm" or not group.name.startswith(HOST_GROUP_PREFIX):
                    continue
                members = set(group.members) - gone
                if members == set(group.members) and members:
                    continue
                if members:
                    info = self.session.factory("ClusterVmGroup")
                    info.name = group.name
                    info.vm = self._refs(members)
                    group_specs.append(self._group_spec("edit", info))
                    continue
                rule = next((r for r in rules if r.name == group.name), None)
                if rule is not None:
                    rule_specs.append(self._rule_spec("remove", remove_key=rule.key))
                group_specs.append(self._group_spec("remove", remove_key=group.name))
            self._apply(cluster, rule_specs, group_specs)
