"""UserDirectory: the users and groups of the simulator's SSO domain.

One domain (``VSPHERE.LOCAL``, after the simulator user's domain) holds
the simulator's user -- the only one that can log in -- in the
Administrators group; ``RetrieveUserGroups`` searches it as vCenter
searches its directory (substring or exact match, users and/or groups,
members of a group, groups of a user). Permissions
(objects/authorization.py) name principals of this directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

class UserDirectory(ManagedObject):
    vim_type = vim.UserDirectory
    #: The group whose members administer everything (vCenter's own permission).
    admin_group = "Administrators"

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "UserDirectory")
        user, _, domain = sim.username.partition("@")
        self.domain = (domain or "vsphere.local").upper()
        self.user = user
        #: group -> its members (user names)
        self.groups = {self.admin_group: {user}, "Users": {user}}

    def principal(self, name: str) -> str:
        """``DOMAIN\\name``, as vCenter spells principals in permissions."""
        return name if "\\" in name else f"{self.domain}\\{name}"

    def exists(self, principal: str, group: bool) -> bool:
        domain, _, name = principal.rpartition("\\")
        if domain and domain.upper() != self.domain:
            return False
        return name in self.groups if group else name == self.user

    def groups_of(self, user_principal: str) -> set[str]:
        name = user_principal.rpartition("\\")[2].partition("@")[0]
        return {self.principal(g) for g, members in self.groups.items() if name in members}

    def session_principal(self, user: str) -> str:
        """The principal of a session's user name (``administrator@vsphere.local``)."""
        name, _, domain = user.partition("@")
        return f"{(domain or self.domain).upper()}\\{name}"

    def _get_domainList(self):  # noqa: N802
        return [self.domain]

    def RetrieveUserGroups(self, ctx: CallContext, domain=None, searchStr: str = "",  # noqa: N802,N803
                           belongsToGroup=None, belongsToUser=None,  # noqa: N803
                           exactMatch: bool = False, findUsers: bool = True,  # noqa: N803
                           findGroups: bool = True):  # noqa: N803
        if domain and domain.upper() != self.domain:
            raise vim.fault.NotFound(msg=f"The domain {domain} does not exist")

        def match(name: str) -> bool:
            if exactMatch:
                return name.lower() == (searchStr or "").lower()
            return (searchStr or "").lower() in name.lower()

        results = []
        if findUsers and match(self.user) and (
                belongsToGroup is None or self.user in self.groups.get(belongsToGroup, ())):
            results.append(vim.UserSearchResult(principal=self.user, fullName=self.user,
                                                group=False))
        if findGroups:
            for group, members in sorted(self.groups.items()):
                if match(group) and (belongsToUser is None
                                     or belongsToUser.partition("@")[0] in members):
                    results.append(vim.UserSearchResult(principal=group, fullName=group,
                                                        group=True))
        return results
