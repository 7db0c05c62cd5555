"""Which storage policy (SPBM) an instance's disks get, and the datastores that honour it.

With ``[vsphere] pbm_enabled``: the flavor's ``vsphere:storage_policy`` (or
Nova's in-tree ``vmware:storage_policy``), else ``[vsphere]
pbm_default_policy``, as Nova's in-tree driver chooses. The policy goes on
the VM's home and on every disk the driver creates for it, and its files go
only to datastores whose capabilities match the policy's rules.

Without ``pbm_enabled``: a flavor's ``vsphere:storage_policy`` is refused
(the flavor asks for what this nova-compute cannot give), Nova's
``vmware:storage_policy`` is ignored, as Nova's in-tree driver ignores it.
"""

from __future__ import annotations

from collections.abc import Sequence

import nova.conf
from nova import exception
from oslo_log import log as logging
from oslo_utils import units

from nova_vsphere_driver import extra_specs
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.cluster_state import ClusterState, DatastoreState
from nova_vsphere_driver.vsphere.spbm import StoragePolicy, UnknownStoragePolicy

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: The flavor extra spec that names an instance's storage policy.
POLICY_KEY = f"{extra_specs.NAMESPACE}:storage_policy"


class InstanceStoragePolicy:
    """Storage policies of one driver's instances (built once; thread-safe)."""

    def __init__(self, services: Services) -> None:
        self._spbm = services.spbm

    def policy(self, flavor, settings: extra_specs.FlavorSettings) -> StoragePolicy | None:
        """The storage policy of an instance of ``flavor`` (None: no policies here).

        InvalidInput when the flavor names a policy vCenter does not have, or
        names one while storage policies are off.
        """
        if self._spbm is None:
            if POLICY_KEY in (getattr(flavor, "extra_specs", None) or {}):
                raise exception.InvalidInput(
                    reason=f"flavor {flavor.name} asks for storage policy "
                    f"{settings.storage_policy!r}, but storage policies are off on this "
                    "nova-compute ([vsphere] pbm_enabled = False)")
            return None
        name = settings.storage_policy or CONF.vsphere.pbm_default_policy
        try:
            with errors.translated():
                return self._spbm.policy(name)
        except UnknownStoragePolicy as exc:
            raise exception.InvalidInput(reason=f"flavor {flavor.name}: {exc}") from None

    def datastores(self, state: ClusterState, stores: Sequence[DatastoreState],
                   policy: StoragePolicy | None,
                   need_bytes: int = 0) -> tuple[StoragePolicy | None, list[DatastoreState]]:
        """(the policy, the datastores of ``stores`` whose capabilities match it): all of
        them without a policy. The policy is the one SPBM knows now (a policy made again
        under its name has a new id). ComputeResourcesUnavailable (Nova may reschedule)
        when no datastore matches."""
        if policy is None:
            return None, list(stores)
        with errors.translated():
            policy, matching = self._spbm.matching(policy, [d.moref for d in stores])
        found = [d for d in stores if d.moref in matching]
        if not found:
            raise exception.ComputeResourcesUnavailable(
                reason=f"cluster {state.ref.name}: no datastore with "
                f"{need_bytes / units.Gi:.1f} GiB free matches storage policy {policy.name} "
                f"(of {', '.join(d.name for d in stores)})")
        return policy, found
