"""CustomFieldsManager: custom attributes defined once and set per entity.

A field applies to every entity, or only to one managed type
(``moType``); entities show the fields that apply to them in
``availableField`` and their values in ``customValue`` (and ``value``).
Names are unique per type (DuplicateName); setting a field on an entity
it does not apply to, or an unknown key, is an InvalidArgument. Removing
a field removes its values. Each change is logged as an event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

FieldDef = vim.CustomFieldsManager.FieldDef
#: vCenter numbers custom fields from 101 (lower keys are its own).
FIRST_KEY = 101


class CustomFieldsManager(ManagedObject):
    vim_type = vim.CustomFieldsManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "CustomFieldsManager")
        self.fields: dict[int, FieldDef] = {}
        self._next_key = FIRST_KEY

    def _get_field(self):
        return list(self.fields.values())

    # -- what entities show --------------------------------------------------------------

    def applies(self, field: FieldDef, entity: Any) -> bool:
        return field.managedObjectType is None or issubclass(entity.vim_type,
                                                             field.managedObjectType)

    def available(self, entity: Any) -> list:
        return [f for f in self.fields.values() if self.applies(f, entity)]

    def values(self, entity: Any) -> list:
        return [vim.CustomFieldsManager.StringValue(key=key, value=value)
                for key, value in sorted(entity.custom_values.items())
                if key in self.fields]

    # -- definitions ---------------------------------------------------------------------

    def _field(self, key: int) -> FieldDef:
        field = self.fields.get(key)
        if field is None:
            raise invalid_argument("key", f"There is no custom field with key {key}")
        return field

    def _check_name(self, name: str, mo_type: Any, key: int | None = None) -> None:
        if not name:
            raise invalid_argument("name", "A custom field needs a name")
        for other in self.fields.values():
            if other.name == name and other.key != key and (
                    other.managedObjectType is None or mo_type is None
                    or other.managedObjectType is mo_type):
                raise vim.fault.DuplicateName(name=name, object=self.ref,
                                              msg=f"The name '{name}' already exists.")

    def AddCustomFieldDef(self, ctx: CallContext, name: str, moType=None,  # noqa: N802,N803
                          fieldDefPolicy=None, fieldPolicy=None):  # noqa: N803
        with self.sim.registry.lock:
            if moType is not None and not issubclass(moType, vim.ManagedEntity):
                raise invalid_argument("moType", "custom fields are for managed entities")
            self._check_name(name, moType)
            field = FieldDef(key=self._next_key, name=name, type=str, managedObjectType=moType,
                             fieldDefPrivileges=fieldDefPolicy, fieldInstancePrivileges=fieldPolicy)
            self._next_key += 1
            self.fields[field.key] = field
            self.sim.events.post(vim.event.CustomFieldDefAddedEvent, fieldKey=field.key,
                                 name=name)
            self.sim.registry.touch()
            return field

    def RemoveCustomFieldDef(self, ctx: CallContext, key: int) -> None:  # noqa: N802
        with self.sim.registry.lock:
            field = self._field(key)
            del self.fields[key]
            for entity in self.sim.registry.all("ManagedEntity"):
                entity.custom_values.pop(key, None)
            self.sim.events.post(vim.event.CustomFieldDefRemovedEvent, fieldKey=key,
                                 name=field.name)
            self.sim.registry.touch()

    def RenameCustomFieldDef(self, ctx: CallContext, key: int, name: str) -> None:  # noqa: N802
        with self.sim.registry.lock:
            field = self._field(key)
            self._check_name(name, field.managedObjectType, key)
            old, field.name = field.name, name
            self.sim.events.post(vim.event.CustomFieldDefRenamedEvent, fieldKey=key, name=old,
                                 newName=name)
            self.sim.registry.touch()

    def SetField(self, ctx: CallContext, entity, key: int, value: str) -> None:  # noqa: N802
        with self.sim.registry.lock:
            target = self.sim.registry.lookup(entity)
            field = self._field(key)
            if not self.applies(field, target):
                raise invalid_argument(
                    "entity", f"The field {field.name} is for {field.managedObjectType._wsdlName}"
                    f" objects, not {target.kind}")
            previous = target.custom_values.get(key, "")
            target.custom_values[key] = value or ""
            self.sim.events.post(
                vim.event.CustomFieldValueChangedEvent, about=target, fieldKey=key,
                name=field.name, value=value or "", prevState=previous,
                entity=vim.event.ManagedEntityEventArgument(entity=target.ref, name=target.name))
            self.sim.registry.touch()
