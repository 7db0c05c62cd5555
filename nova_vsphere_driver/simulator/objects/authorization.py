"""AuthorizationManager: roles, privileges and the permissions that grant them.

vCenter's system roles (Admin, ReadOnly, View, Anonymous, NoAccess) and
roles clients add; permissions give a principal of the user directory a
role on an entity, propagating to its descendants or not. A principal's
privileges on an entity come from the nearest permissions for it or its
groups (the entity's own, else its ancestors' that propagate), as vCenter
resolves them: ``HasPrivilegeOnEntity``, ``FetchUserPrivilegeOnEntities``
and entities' ``effectiveRole`` answer from that. The last permission that
gives Admin on the root folder cannot go (AuthMinimumAdminPermission).

Limitation: privileges are not enforced on calls (the simulator's one
user is an administrator).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

Perm = vim.AuthorizationManager.Permission
ADMIN, READ_ONLY, VIEW, ANONYMOUS, NO_ACCESS = -1, -2, -3, -4, -5
_BASE = ("System.Anonymous", "System.View", "System.Read")
#: The privileges (group.name) the simulator knows, as vCenter names them.
PRIVILEGES = (
    *_BASE,
    "Global.Settings", "Global.Licenses", "Global.LogEvent", "Global.CancelTask",
    "Global.ManageCustomFields", "Global.SetCustomField", "Global.Diagnostics",
    "Extension.Register", "Extension.Update", "Extension.Unregister",
    "Sessions.TerminateSession", "Sessions.ValidateSession",
    "Folder.Create", "Folder.Delete", "Folder.Rename", "Folder.Move",
    "Datacenter.Create", "Datacenter.Delete",
    "Datastore.Browse", "Datastore.FileManagement", "Datastore.AllocateSpace",
    "Datastore.DeleteFile", "Datastore.UpdateVirtualMachineFiles",
    "Network.Assign",
    "Host.Config.Maintenance", "Host.Config.Settings", "Host.Config.AdvancedConfig",
    "Host.Inventory.EditCluster", "Host.Local.ReconfigVM",
    "Resource.AssignVMToPool", "Resource.HotMigrate", "Resource.ColdMigrate",
    "Resource.ApplyRecommendation",
    "VirtualMachine.Inventory.Create", "VirtualMachine.Inventory.Delete",
    "VirtualMachine.Inventory.Register", "VirtualMachine.Inventory.Unregister",
    "VirtualMachine.Interact.PowerOn", "VirtualMachine.Interact.PowerOff",
    "VirtualMachine.Interact.Reset", "VirtualMachine.Interact.Suspend",
    "VirtualMachine.Interact.ConsoleInteract", "VirtualMachine.Config.AddNewDisk",
    "VirtualMachine.Config.EditDevice", "VirtualMachine.Config.Resource",
    "VirtualMachine.Config.Settings", "VirtualMachine.Provisioning.Clone",
    "VirtualMachine.Provisioning.MarkAsTemplate",
    "VirtualMachine.State.CreateSnapshot", "VirtualMachine.State.RemoveSnapshot",
    "VirtualMachine.State.RevertToSnapshot",
    "Alarm.Create", "Alarm.Delete", "Alarm.Edit", "Alarm.Acknowledge",
    "Authorization.ModifyRoles", "Authorization.ModifyPermissions",
    "Task.Create", "Task.Update",
)
_SYSTEM_ROLES = (
    (ADMIN, "Admin", "Administrator", PRIVILEGES),
    (READ_ONLY, "ReadOnly", "Read-only", _BASE),
    (VIEW, "View", "View", _BASE[:2]),
    (ANONYMOUS, "Anonymous", "Anonymous", _BASE[:1]),
    (NO_ACCESS, "NoAccess", "No access", ()),
)


class AuthorizationManager(ManagedObject):
    vim_type = vim.AuthorizationManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "AuthorizationManager")
        self.roles: dict[int, vim.AuthorizationManager.Role] = {
            role_id: vim.AuthorizationManager.Role(
                roleId=role_id, system=True, name=name,
                info=vim.Description(label=label, summary=label), privilege=list(privs))
            for role_id, name, label, privs in _SYSTEM_ROLES}
        self._next_role = 1
        #: entity moid -> its permissions
        self.permissions: dict[str, list] = {}

    def grant_administrators(self, root: Any) -> None:
        """vCenter's own permission: the Administrators group is Admin everywhere."""
        directory = self.sim.user_directory
        principal = directory.principal(directory.admin_group)
        self.permissions[root.moid] = [Perm(entity=root.ref, principal=principal, group=True,
                                            roleId=ADMIN, propagate=True)]

    # -- properties -----------------------------------------------------------------------

    def _get_roleList(self):  # noqa: N802
        return list(self.roles.values())

    def _get_privilegeList(self):  # noqa: N802
        return [vim.AuthorizationManager.Privilege(
            privId=p, onParent=False, name=p.rpartition(".")[2],
            privGroupName=p.rpartition(".")[0]) for p in PRIVILEGES]

    def _get_description(self):
        def element(key: str) -> vim.ElementDescription:
            return vim.ElementDescription(key=key, label=key, summary=key)

        groups = sorted({p.rpartition(".")[0] for p in PRIVILEGES})
        return vim.AuthorizationDescription(privilege=[element(p) for p in PRIVILEGES],
                                            privilegeGroup=[element(g) for g in groups])

    # -- resolving ------------------------------------------------------------------------

    def entity_permissions(self, entity: Any) -> list:
        return list(self.permissions.get(entity.moid, ()))

    def roles_of(self, principal: str, entity: Any) -> set[int]:
        """The roles ``principal`` (a user) has on ``entity``: the nearest permissions' for it."""
        names = {principal, *self.sim.user_directory.groups_of(principal)}
        node, own = entity, True
        while node is not None:
            found = {p.roleId for p in self.permissions.get(node.moid, ())
                     if p.principal in names and (own or p.propagate)}
            if found:
                return found
            node, own = node.parent, False
        return set()

    def privileges_of(self, principal: str, entity: Any) -> set[str]:
        return {priv for role_id in self.roles_of(principal, entity)
                for priv in self.roles[role_id].privilege or ()}

    def session_principal(self, ctx: CallContext, session_id: str | None = None) -> str:
        sessions = self.sim.sessions
        session = sessions.get(session_id) if session_id else ctx.session
        if session is None:
            raise vim.fault.NotFound(msg=f"The session {session_id} does not exist")
        return self.sim.user_directory.session_principal(session.user)

    # -- roles ----------------------------------------------------------------------------

    def _role(self, role_id: int) -> vim.AuthorizationManager.Role:
        role = self.roles.get(role_id)
        if role is None:
            raise vim.fault.NotFound(msg=f"The role {role_id} does not exist")
        return role

    def _check_privileges(self, priv_ids) -> list[str]:
        unknown = [p for p in priv_ids or () if p not in PRIVILEGES]
        if unknown:
            raise invalid_argument("privIds", f"Unknown privileges: {', '.join(unknown)}")
        # vCenter gives every role the System privileges.
        return list(dict.fromkeys([*_BASE, *(priv_ids or ())]))

    def _check_role_name(self, name: str, role_id: int | None = None) -> None:
        if not name:
            raise vim.fault.InvalidName(name=name or "", msg="A role needs a name")
        for role in self.roles.values():
            if role.name == name and role.roleId != role_id:
                raise vim.fault.AlreadyExists(name=name, msg=f"The role {name} already exists")

    def AddAuthorizationRole(self, ctx: CallContext, name: str, privIds=None) -> int:  # noqa: N802,N803
        with self.sim.registry.lock:
            self._check_role_name(name)
            privileges = self._check_privileges(privIds)
            role_id = self._next_role
            self._next_role += 1
            self.roles[role_id] = vim.AuthorizationManager.Role(
                roleId=role_id, system=False, name=name,
                info=vim.Description(label=name, summary=name), privilege=privileges)
            self.sim.events.post(vim.event.RoleAddedEvent, privilegeList=privileges,
                                 role=vim.event.RoleEventArgument(roleId=role_id, name=name))
            self.sim.registry.touch()
            return role_id

    def UpdateAuthorizationRole(self, ctx: CallContext, roleId: int, newName: str,  # noqa: N802,N803
                                privIds=None) -> None:  # noqa: N803
        with self.sim.registry.lock:
            role = self._role(roleId)
            if role.system:
                raise invalid_argument("roleId", f"The system role {role.name} cannot change")
            self._check_role_name(newName, roleId)
            previous = role.name
            role.name = newName
            role.info = vim.Description(label=newName, summary=newName)
            if privIds is not None:
                role.privilege = self._check_privileges(privIds)
            self.sim.events.post(vim.event.RoleUpdatedEvent, prevRoleName=previous,
                                 privilegeList=list(role.privilege),
                                 role=vim.event.RoleEventArgument(roleId=roleId, name=newName))
            self.sim.registry.touch()

    def RemoveAuthorizationRole(self, ctx: CallContext, roleId: int,  # noqa: N802,N803
                                failIfUsed: bool) -> None:  # noqa: N803
        with self.sim.registry.lock:
            role = self._role(roleId)
            if role.system:
                raise invalid_argument("roleId", f"The system role {role.name} cannot be "
                                       "removed")
            used = [p for perms in self.permissions.values() for p in perms
                    if p.roleId == roleId]
            if used and failIfUsed:
                raise vim.fault.RemoveFailed(msg=f"The role {role.name} is in use")
            for moid, perms in list(self.permissions.items()):
                self.permissions[moid] = [p for p in perms if p.roleId != roleId]
            del self.roles[roleId]
            self.sim.events.post(vim.event.RoleRemovedEvent,
                                 role=vim.event.RoleEventArgument(roleId=roleId, name=role.name))
            self.sim.registry.touch()

    # -- permissions ------------------------------------------------------------------------

    def RetrieveAllPermissions(self, ctx: CallContext):  # noqa: N802
        return [p for perms in self.permissions.values() for p in perms]

    def RetrieveEntityPermissions(self, ctx: CallContext, entity, inherited: bool):  # noqa: N802
        with self.sim.registry.lock:
            node = self.sim.registry.lookup(entity)
            found = self.entity_permissions(node)
            if inherited:
                for ancestor in node.ancestors():
                    found += [p for p in self.permissions.get(ancestor.moid, ()) if p.propagate]
            return found

    def RetrieveRolePermissions(self, ctx: CallContext, roleId: int):  # noqa: N802,N803
        self._role(roleId)
        return [p for perms in self.permissions.values() for p in perms if p.roleId == roleId]

    def _admin_kept(self, root_moid: str, new: list) -> None:
        if not any(p.roleId == ADMIN and p.propagate for p in new):
            raise vim.fault.AuthMinimumAdminPermission(
                msg="The root folder must keep a propagating Admin permission")

    def _set(self, ctx: CallContext, entity, permissions, replace: bool) -> None:
        directory = self.sim.user_directory
        with self.sim.registry.lock:
            node = self.sim.registry.lookup(entity)
            current = [] if replace else self.entity_permissions(node)
            for perm in permissions or ():
                self._role(perm.roleId)
                principal = directory.principal(perm.principal)
                if not directory.exists(principal, bool(perm.group)):
                    raise vim.fault.UserNotFound(principal=perm.principal, unresolved=False,
                                                 msg=f"The principal {perm.principal} does "
                                                 "not exist")
                current = [p for p in current
                           if not (p.principal == principal and p.group == perm.group)]
                current.append(Perm(entity=node.ref, principal=principal, group=perm.group,
                                    roleId=perm.roleId, propagate=perm.propagate))
                self.sim.events.post(
                    vim.event.PermissionAddedEvent, principal=principal, group=perm.group,
                    propagate=perm.propagate,
                    entity=vim.event.ManagedEntityEventArgument(entity=node.ref, name=node.name),
                    role=vim.event.RoleEventArgument(roleId=perm.roleId,
                                                     name=self.roles[perm.roleId].name))
            if node is self.sim.root_folder:
                self._admin_kept(node.moid, current)
            self.permissions[node.moid] = current
            self.sim.registry.touch()

    def SetEntityPermissions(self, ctx: CallContext, entity, permission=None) -> None:  # noqa: N802
        self._set(ctx, entity, permission, replace=False)

    def ResetEntityPermissions(self, ctx: CallContext, entity, permission=None) -> None:  # noqa: N802
        self._set(ctx, entity, permission, replace=True)

    def RemoveEntityPermission(self, ctx: CallContext, entity, user: str,  # noqa: N802
                               isGroup: bool) -> None:  # noqa: N803
        with self.sim.registry.lock:
            node = self.sim.registry.lookup(entity)
            principal = self.sim.user_directory.principal(user)
            current = self.entity_permissions(node)
            kept = [p for p in current if not (p.principal == principal and p.group == isGroup)]
            if len(kept) == len(current):
                raise vim.fault.NotFound(msg=f"{user} has no permission on {node.name}")
            if node is self.sim.root_folder:
                self._admin_kept(node.moid, kept)
            self.permissions[node.moid] = kept
            self.sim.events.post(
                vim.event.PermissionRemovedEvent, principal=principal, group=isGroup,
                entity=vim.event.ManagedEntityEventArgument(entity=node.ref, name=node.name))
            self.sim.registry.touch()

    # -- privilege checks --------------------------------------------------------------------

    def HasPrivilegeOnEntity(self, ctx: CallContext, entity, sessionId: str,  # noqa: N802,N803
                             privId=None):  # noqa: N803
        with self.sim.registry.lock:
            held = self.privileges_of(self.session_principal(ctx, sessionId),
                                      self.sim.registry.lookup(entity))
            return [p in held for p in privId or ()]

    def _entity_privileges(self, principal: str, entities, priv_ids) -> list:
        results = []
        for ref in entities:
            held = self.privileges_of(principal, self.sim.registry.lookup(ref))
            results.append(vim.AuthorizationManager.EntityPrivilege(
                entity=ref, privAvailability=[
                    vim.AuthorizationManager.PrivilegeAvailability(privId=p, isGranted=p in held)
                    for p in priv_ids or ()]))
        return results

    def HasPrivilegeOnEntities(self, ctx: CallContext, entity, sessionId: str,  # noqa: N802,N803
                               privId=None):  # noqa: N803
        with self.sim.registry.lock:
            return self._entity_privileges(self.session_principal(ctx, sessionId), entity,
                                           privId)

    def HasUserPrivilegeOnEntities(self, ctx: CallContext, entities, userName: str,  # noqa: N802,N803
                                   privId=None):  # noqa: N803
        with self.sim.registry.lock:
            principal = self.sim.user_directory.principal(userName)
            return self._entity_privileges(principal, entities, privId)

    def FetchUserPrivilegeOnEntities(self, ctx: CallContext, entities,  # noqa: N802
                                     userName: str):  # noqa: N803
        with self.sim.registry.lock:
            principal = self.sim.user_directory.principal(userName)
            return [vim.AuthorizationManager.UserPrivilegeResult(
                entity=ref, privileges=sorted(self.privileges_of(
                    principal, self.sim.registry.lookup(ref))))
                for ref in entities]
