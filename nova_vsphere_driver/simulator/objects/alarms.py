"""AlarmManager and Alarm: alarm definitions on entities, and whether their actions run.

Alarms are created on an entity (names are unique per entity:
DuplicateName), listed by ``GetAlarm`` (an entity's, or all), changed by
``ReconfigureAlarm`` and removed by ``RemoveAlarm``; each change is logged
as an event. ``EnableAlarmActions`` turns an entity's alarm actions on or
off (its ``alarmActionsEnabled``).

Limitation: alarm expressions are not evaluated, so no alarm ever
triggers: ``GetAlarmState`` and entities' ``triggeredAlarmState`` are
empty.
"""

from __future__ import annotations

import copy
import datetime
from typing import TYPE_CHECKING, Any

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _check_spec(spec) -> None:
    if not spec.name:
        raise vim.fault.InvalidName(name=spec.name or "", msg="An alarm needs a name")


class Alarm(ManagedObject):
    vim_type = vim.alarm.Alarm
    moid_prefix = "alarm"

    def __init__(self, sim: Simulator, entity: Any, spec, user: str, event_key: int) -> None:
        super().__init__(sim)
        self.entity = entity
        self.spec = copy.deepcopy(spec)
        self.user = user
        self.modified = _now()
        self.event_key = event_key

    def _get_info(self):
        spec = self.spec
        return vim.alarm.AlarmInfo(
            name=spec.name, systemName=spec.systemName, description=spec.description or "",
            enabled=bool(spec.enabled), expression=spec.expression, action=spec.action,
            actionFrequency=spec.actionFrequency, setting=spec.setting, key=self.moid,
            alarm=self.ref, entity=self.entity.ref, lastModifiedTime=self.modified,
            lastModifiedUser=self.user, creationEventId=self.event_key)

    def _argument(self) -> vim.event.AlarmEventArgument:
        return vim.event.AlarmEventArgument(alarm=self.ref, name=self.spec.name)

    def _entity_argument(self) -> vim.event.ManagedEntityEventArgument:
        return vim.event.ManagedEntityEventArgument(entity=self.entity.ref, name=self.entity.name)

    def ReconfigureAlarm(self, ctx: CallContext, spec) -> None:  # noqa: N802
        with self.sim.registry.lock:
            _check_spec(spec)
            self.sim.alarms.check_unique(self.entity, spec.name, self)
            self.spec = copy.deepcopy(spec)
            self.modified = _now()
            self.user = ctx.session.user if ctx.session else ""
            self.sim.events.post(vim.event.AlarmReconfiguredEvent, about=self.entity,
                                 alarm=self._argument(), entity=self._entity_argument())
            self.sim.registry.touch()

    def RemoveAlarm(self, ctx: CallContext) -> None:  # noqa: N802
        with self.sim.registry.lock:
            self.sim.events.post(vim.event.AlarmRemovedEvent, about=self.entity,
                                 alarm=self._argument(), entity=self._entity_argument())
            self.sim.registry.remove(self.moid)


class AlarmManager(ManagedObject):
    vim_type = vim.alarm.AlarmManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "AlarmManager")
        #: moids of entities whose alarm actions are disabled
        self.actions_disabled: set[str] = set()

    def _get_defaultExpression(self):  # noqa: N802
        return [vim.alarm.StateAlarmExpression(type=vim.VirtualMachine,
                                               statePath="runtime.powerState",
                                               operator="isEqual", red="poweredOff"),
                vim.alarm.EventAlarmExpression(eventType=vim.event.VmPoweredOffEvent,
                                               objectType=vim.VirtualMachine, status="red")]

    def _get_description(self):
        def elements(values) -> list:
            return [vim.ElementDescription(key=v, label=v, summary=v) for v in values]

        def types(classes) -> list:
            return [vim.TypeDescription(key=c, label=c._wsdlName,
                                        summary=c._wsdlName) for c in classes]

        alarm = vim.alarm
        return alarm.AlarmDescription(
            expr=types([alarm.StateAlarmExpression, alarm.EventAlarmExpression,
                        alarm.MetricAlarmExpression, alarm.AndAlarmExpression,
                        alarm.OrAlarmExpression]),
            stateOperator=elements(alarm.StateAlarmExpression.StateOperator.values),
            metricOperator=elements(alarm.MetricAlarmExpression.MetricOperator.values),
            hostSystemConnectionState=elements(vim.HostSystem.ConnectionState.values),
            virtualMachinePowerState=elements(vim.VirtualMachine.PowerState.values),
            datastoreConnectionState=elements(["connected", "disconnected"]),
            hostSystemPowerState=elements(vim.HostSystem.PowerState.values),
            virtualMachineGuestHeartbeatStatus=elements(vim.ManagedEntity.Status.values),
            entityStatus=elements(vim.ManagedEntity.Status.values),
            action=types([vim.action.MethodAction, vim.action.SendEmailAction,
                          vim.action.RunScriptAction,
                          alarm.GroupAlarmAction]))

    def alarms_on(self, entity: Any | None) -> list:
        return [a for a in self.sim.registry.all("Alarm")
                if entity is None or a.entity is entity]

    def check_unique(self, entity: Any, name: str, alarm: Any = None) -> None:
        for other in self.alarms_on(entity):
            if other is not alarm and other.spec.name == name:
                raise vim.fault.DuplicateName(name=name, object=other.ref,
                                              msg=f"The alarm {name} already exists on "
                                              f"{entity.name}")

    def CreateAlarm(self, ctx: CallContext, entity, spec):  # noqa: N802
        with self.sim.registry.lock:
            target = self.sim.registry.lookup(entity)
            _check_spec(spec)
            self.check_unique(target, spec.name)
            user = ctx.session.user if ctx.session else ""
            alarm = self.sim.factory.alarm(target, spec, user)
            event = self.sim.events.post(vim.event.AlarmCreatedEvent, about=target,
                                         alarm=alarm._argument(),
                                         entity=alarm._entity_argument())
            alarm.event_key = event.key
            return alarm.ref

    def GetAlarm(self, ctx: CallContext, entity=None):  # noqa: N802
        with self.sim.registry.lock:
            target = self.sim.registry.lookup(entity) if entity is not None else None
            return [a.ref for a in self.alarms_on(target)]

    def GetAlarmState(self, ctx: CallContext, entity):  # noqa: N802
        self.sim.registry.lookup(entity)
        return []  # alarms are not evaluated (see the module's limitation)

    def AcknowledgeAlarm(self, ctx: CallContext, alarm, entity) -> None:  # noqa: N802
        self.sim.registry.lookup(alarm)
        self.sim.registry.lookup(entity)

    def EnableAlarmActions(self, ctx: CallContext, entity, enabled: bool) -> None:  # noqa: N802
        with self.sim.registry.lock:
            target = self.sim.registry.lookup(entity)
            if enabled:
                self.actions_disabled.discard(target.moid)
            else:
                self.actions_disabled.add(target.moid)
            self.sim.registry.touch()

    def AreAlarmActionsEnabled(self, ctx: CallContext, entity) -> bool:  # noqa: N802
        return self.sim.registry.lookup(entity).moid not in self.actions_disabled
