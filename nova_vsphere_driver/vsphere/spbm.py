"""vCenter's storage policy service (SPBM): policies by name, and the datastores that
honour them, through oslo.vmware's ``pbm`` helpers on the driver's session.

Policy ids are looked up by name once and kept: a policy's id never
changes. A policy deleted (or renamed) in vCenter since is looked up again
the first time SPBM refuses its id.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable

from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import pbm as oslo_pbm
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.session import VSphereSession

LOG = logging.getLogger(__name__)


class UnknownStoragePolicy(LookupError):
    """vCenter has no storage policy of that name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"vCenter has no storage policy named {name!r} (it has: "
                         f"{', '.join(self.known) or 'none'})")


@dataclasses.dataclass(frozen=True)
class StoragePolicy:
    name: str
    profile_id: str


class SpbmClient:
    """Storage policies of one vCenter (thread-safe; ids cached by name)."""

    def __init__(self, session: VSphereSession) -> None:
        self._session = session
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def policy(self, name: str) -> StoragePolicy:
        """The policy called ``name``; UnknownStoragePolicy when vCenter has none."""
        with self._lock:
            cached = self._ids.get(name)
        if cached is None:
            names = self._reload()
            cached = names.get(name)
            if cached is None:
                raise UnknownStoragePolicy(name, names)
        return StoragePolicy(name=name, profile_id=cached)

    def _reload(self) -> dict[str, str]:
        """Every storage policy's id by name (two SPBM calls)."""
        profiles = oslo_pbm.get_all_profiles(self._session) or []
        names = {str(p.name): str(p.profileId.uniqueId) for p in profiles}
        with self._lock:
            self._ids = dict(names)
        return names

    def _profile_id(self, policy: StoragePolicy):
        profile_id = self._session.pbm.client.factory.create("ns0:PbmProfileId")
        profile_id.uniqueId = policy.profile_id
        return profile_id

    def matching(self, policy: StoragePolicy,
                 datastores: Iterable[str]) -> tuple[StoragePolicy, set[str]]:
        """(the policy, the datastores (morefs) among ``datastores`` whose capabilities
        match its rules): one SPBM call. A policy vCenter no longer knows by its id is
        looked up by name again, and the policy returned is the one found then."""
        morefs = list(datastores)
        if not morefs:
            return policy, set()
        factory = self._session.pbm.client.factory
        hubs = oslo_pbm.convert_datastores_to_hubs(
            factory, [vim_util.get_moref(m, "Datastore") for m in morefs])
        try:
            found = oslo_pbm.filter_hubs_by_profile(self._session, hubs,
                                                    self._profile_id(policy))
        except vexc.VimException as exc:
            LOG.info("SPBM refused storage policy %s (%s): looking it up again", policy.name,
                     exc)
            with self._lock:
                self._ids.pop(policy.name, None)
            policy = self.policy(policy.name)
            found = oslo_pbm.filter_hubs_by_profile(self._session, hubs,
                                                    self._profile_id(policy))
        return policy, {str(h.hubId) for h in found or []}
