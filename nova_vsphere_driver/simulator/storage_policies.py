"""Storage policies: vCenter's storage policy service (SPBM), served on ``/pbm``.

vCenter serves SPBM as a second SOAP API (namespace ``urn:pbm``) next to
vim25; its clients (oslo.vmware's ``pbm`` module, pyVmomi's ``pbm`` stubs,
govmomi's ``pbm`` package) log in to vim25 and present that session's
cookie in a ``vcSessionCookie`` SOAP header. Its managed objects have their
own well-known ids (``ServiceInstance``, ``ProfileManager``, ...), which is
why they live in a table of their own here rather than in the vim25
registry.

The policies come from the inventory (``storage_policies``): a name, a
description, the tag their tag-based rule requires, and the datastores
compatible with them (all datastores when none are listed). A VM's and its
disks' policies are what their config specs asked for (``vmProfile``,
``VirtualDeviceConfigSpec.profile``, the relocate spec's ``profile``); they
are kept on the VM (``VirtualMachine.storage_profiles``) and so survive a
restart with the rest of its state.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import TYPE_CHECKING, Any

from pyVmomi import pbm, vim, vmodl

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.base import ManagedObject
    from nova_vsphere_driver.simulator.service import Simulator

#: The rule every simulated policy carries: a vCenter tag-based placement rule.
TAG_NAMESPACE = "http://www.vmware.com/storage/tag"
TAG_CATEGORY = "Storage tier"
#: The key of a VM's own (home) association in ``VirtualMachine.storage_profiles``.
VM_HOME = "vm"
#: Policies the inventory gives no id get one derived from their name: the same after a
#: restart (``--state``), so the VMs' associations, which are saved, still hold.
POLICY_ID_NAMESPACE = uuid.UUID("8d2f6c1e-5a7b-4d3c-9e0f-1a2b3c4d5e6f")


@dataclasses.dataclass
class PolicyDefinition:
    profile_id: str
    name: str
    description: str = ""
    #: The tag its rule requires of a datastore.
    tag: str = ""
    #: Names of the compatible datastores; None: every datastore.
    datastores: tuple[str, ...] | None = None
    created: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))


class StoragePolicyService:
    """The policies of one simulated vCenter and the SPBM objects that serve them."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.policies: dict[str, PolicyDefinition] = {}
        #: SPBM's managed objects by id (its ids clash with vim25's ServiceInstance).
        self.objects: dict[str, ManagedObject] = {}

    def add_object(self, obj: ManagedObject) -> ManagedObject:
        self.objects[obj.moid] = obj
        return obj

    def add(self, name: str, *, description: str = "", tag: str | None = None,
            datastores: list[str] | None = None,
            profile_id: str | None = None) -> PolicyDefinition:
        """A policy; ``datastores`` (names): the compatible ones (None: all)."""
        profile_id = profile_id or str(uuid.uuid5(POLICY_ID_NAMESPACE, name))
        policy = PolicyDefinition(
            profile_id=profile_id, name=name, description=description, tag=tag or name,
            datastores=tuple(datastores) if datastores is not None else None)
        self.policies[policy.profile_id] = policy
        return policy

    def named(self, name: str) -> PolicyDefinition | None:
        return next((p for p in self.policies.values() if p.name == name), None)

    def compatible(self, policy: PolicyDefinition, datastore_name: str) -> bool:
        return policy.datastores is None or datastore_name in policy.datastores

    # -- what the vim25 side asks -----------------------------------------------------

    def profile_of(self, specs: Any, where: str) -> str | None:
        """The policy a list of VirtualMachineProfileSpec asks for: its id, "" to drop the
        association (an empty profile spec), None when ``specs`` says nothing.

        InvalidArgument naming ``where`` for a policy that does not exist.
        """
        found = None
        for spec in specs or []:
            if isinstance(spec, vim.vm.EmptyProfileSpec):
                found = ""
            elif isinstance(spec, vim.vm.DefinedProfileSpec):
                if spec.profileId not in self.policies:
                    raise vmodl.fault.InvalidArgument(
                        invalidProperty=where,
                        msg=f"A specified parameter was not correct: {where} (storage policy "
                        f"{spec.profileId} does not exist)")
                found = spec.profileId
        return found

    # -- the SPBM answers -------------------------------------------------------------

    def profile(self, policy: PolicyDefinition) -> pbm.profile.CapabilityBasedProfile:
        """A policy as SPBM describes it: one tag-based rule set."""
        rule = pbm.capability.CapabilityInstance(
            id=pbm.capability.CapabilityMetadata.UniqueId(namespace=TAG_NAMESPACE,
                                                          id=TAG_CATEGORY),
            constraint=[pbm.capability.ConstraintInstance(propertyInstance=[
                pbm.capability.PropertyInstance(
                    id=f"com.vmware.storage.tag.{TAG_CATEGORY}.property",
                    value=pbm.capability.types.DiscreteSet(values=[policy.tag]))])])
        user = self.sim.username
        return pbm.profile.CapabilityBasedProfile(
            profileId=pbm.profile.ProfileId(uniqueId=policy.profile_id), name=policy.name,
            description=policy.description, creationTime=policy.created, createdBy=user,
            lastUpdatedTime=policy.created, lastUpdatedBy=user, generationId=0,
            isDefault=False, profileCategory="REQUIREMENT",
            resourceType=pbm.profile.ResourceType(resourceType="STORAGE"),
            constraints=pbm.profile.SubProfileCapabilityConstraints(subProfiles=[
                pbm.profile.SubProfileCapabilityConstraints.SubProfile(
                    name="Tag based placement", capability=[rule])]))

    def policy(self, profile_id, where: str = "profileId") -> PolicyDefinition:
        """The policy a PbmProfileId names; InvalidArgument when there is none."""
        policy = self.policies.get(getattr(profile_id, "uniqueId", None))
        if policy is None:
            raise vmodl.fault.InvalidArgument(invalidProperty=where,
                                              msg=f"Profile {profile_id} does not exist")
        return policy

    def hubs(self, hubs) -> list:
        """The datastores PbmPlacementHubs name (all datastores when none are given)."""
        if not hubs:
            return list(self.sim.registry.all("Datastore"))
        found = []
        for hub in hubs:
            if hub.hubType != "Datastore":
                raise vmodl.fault.InvalidArgument(
                    invalidProperty="hubsToSearch", msg=f"hub type {hub.hubType!r} is not "
                    "supported by the simulator (Datastore only)")
            if hub.hubId in self.sim.registry:
                obj = self.sim.registry.get(hub.hubId)
                if obj.kind == "Datastore":
                    found.append(obj)
        return found

    def entity_profiles(self, entity) -> list[str]:
        """The ids of the policies associated with a PbmServerObjectRef (VM or disk)."""
        kind, key = entity.objectType, entity.key or ""
        vm_id, _, disk_key = key.partition(":")
        if kind not in ("virtualMachine", "virtualDiskId") or vm_id not in self.sim.registry:
            return []
        vm = self.sim.registry.get(vm_id)
        if vm.kind != "VirtualMachine":
            return []
        profiles = getattr(vm, "storage_profiles", {})
        wanted = VM_HOME if kind == "virtualMachine" else disk_key
        if kind == "virtualDiskId" and not any(
                str(d.key) == disk_key for d in vm.disks()):
            return []
        found = profiles.get(wanted)
        return [found] if found else []

    def associated(self, policy: PolicyDefinition) -> list[pbm.ServerObjectRef]:
        """The VMs and disks associated with ``policy``."""
        refs = []
        for vm in self.sim.vms():
            for key, profile_id in getattr(vm, "storage_profiles", {}).items():
                if profile_id != policy.profile_id:
                    continue
                if key == VM_HOME:
                    refs.append(pbm.ServerObjectRef(objectType="virtualMachine", key=vm.moid,
                                                    serverUuid=self.sim.instance_uuid))
                elif any(str(d.key) == key for d in vm.disks()):
                    refs.append(pbm.ServerObjectRef(objectType="virtualDiskId",
                                                    key=f"{vm.moid}:{key}",
                                                    serverUuid=self.sim.instance_uuid))
        return refs
