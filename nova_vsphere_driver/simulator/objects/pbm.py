"""The storage policy service's (SPBM, ``urn:pbm``) managed objects.

They answer what SPBM clients ask -- oslo.vmware's ``pbm`` module and
Nova's in-tree driver through it: the service content, the storage policies
and their contents, which datastores a policy's rules match, which policies
a VM or disk is associated with and which VMs and disks a policy is. The
policies and associations themselves are
:class:`~nova_vsphere_driver.simulator.storage_policies.StoragePolicyService`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyVmomi import pbm, vmodl

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator


class PbmObject(ManagedObject):
    """An SPBM object: a well-known id, served from the storage policy table."""

    def __init__(self, sim: Simulator, moid: str) -> None:
        super().__init__(sim, moid)

    @property
    def policies(self):
        return self.sim.storage_policies

    def persists(self) -> bool:
        return False  # rebuilt with the simulator; the policies come from the inventory


class PbmServiceInstance(PbmObject):
    vim_type = pbm.ServiceInstance

    def PbmRetrieveServiceContent(self, ctx: CallContext):  # noqa: N802
        objects = self.policies.objects
        return pbm.ServiceInstanceContent(
            aboutInfo=pbm.AboutInfo(name="PBM", version="8.0",
                                    instanceUuid=self.sim.instance_uuid),
            sessionManager=objects["SessionManager"].ref,
            capabilityMetadataManager=objects["CapabilityMetadataManager"].ref,
            profileManager=objects["ProfileManager"].ref,
            complianceManager=objects["complianceManager"].ref,
            placementSolver=objects["placementSolver"].ref)


class PbmSessionManager(PbmObject):
    vim_type = pbm.auth.SessionManager


class PbmCapabilityMetadataManager(PbmObject):
    vim_type = pbm.capability.CapabilityMetadataManager


class PbmComplianceManager(PbmObject):
    vim_type = pbm.compliance.ComplianceManager


class PbmProfileManager(PbmObject):
    vim_type = pbm.profile.ProfileManager

    def PbmQueryProfile(self, ctx: CallContext, resourceType, profileCategory=None):  # noqa: N802,N803
        if resourceType is None or resourceType.resourceType != "STORAGE":
            return []
        if profileCategory not in (None, "REQUIREMENT"):
            return []
        with self.sim.registry.lock:
            return [pbm.profile.ProfileId(uniqueId=p) for p in self.policies.policies]

    def PbmRetrieveContent(self, ctx: CallContext, profileIds):  # noqa: N802,N803
        if not profileIds:
            raise vmodl.fault.InvalidRequest(msg="no profile ids")
        with self.sim.registry.lock:
            return [self.policies.profile(self.policies.policy(p, "profileIds"))
                    for p in profileIds]

    def PbmQueryAssociatedProfile(self, ctx: CallContext, entity):  # noqa: N802
        with self.sim.registry.lock:
            return [pbm.profile.ProfileId(uniqueId=p)
                    for p in self.policies.entity_profiles(entity)]

    def PbmQueryAssociatedProfiles(self, ctx: CallContext, entities):  # noqa: N802
        with self.sim.registry.lock:
            return [pbm.profile.QueryProfileResult(
                object=entity, profileId=[pbm.profile.ProfileId(uniqueId=p)
                                          for p in self.policies.entity_profiles(entity)])
                    for entity in entities or []]

    def PbmQueryAssociatedEntity(self, ctx: CallContext, profile, entityType=None):  # noqa: N802,N803
        with self.sim.registry.lock:
            refs = self.policies.associated(self.policies.policy(profile, "profile"))
        return [r for r in refs if entityType in (None, r.objectType)]


class PbmPlacementSolver(PbmObject):
    vim_type = pbm.placement.PlacementSolver

    def PbmQueryMatchingHub(self, ctx: CallContext, profile, hubsToSearch=None):  # noqa: N802,N803
        with self.sim.registry.lock:
            policy = self.policies.policy(profile, "profile")
            return [pbm.placement.PlacementHub(hubType="Datastore", hubId=ds.moid)
                    for ds in self.policies.hubs(hubsToSearch)
                    if self.policies.compatible(policy, ds.name)]

    def PbmCheckCompatibility(self, ctx: CallContext, profile, hubsToSearch=None):  # noqa: N802,N803
        with self.sim.registry.lock:
            policy = self.policies.policy(profile, "profile")
            results = []
            for ds in self.policies.hubs(hubsToSearch):
                hub = pbm.placement.PlacementHub(hubType="Datastore", hubId=ds.moid)
                error = None
                if not self.policies.compatible(policy, ds.name):
                    error = [vmodl.MethodFault(msg=f"Datastore {ds.name} does not match the "
                                               f"rules of storage policy {policy.name}")]
                results.append(pbm.placement.CompatibilityResult(hub=hub, error=error))
            return results
