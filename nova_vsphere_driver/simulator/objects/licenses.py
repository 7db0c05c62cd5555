"""LicenseManager and LicenseAssignmentManager: license keys and what they are assigned to.

vCenter starts in evaluation mode (key 00000-00000-00000-00000-00000).
``AddLicense`` takes a key of vCenter's form (five groups of five letters
or digits) -- the simulator cannot decode real keys, so each is a vSphere
Enterprise Plus license for 32 CPUs -- and answers a malformed one with
a LicenseInfo whose "diagnostic" property says so (nothing is added), as
vCenter does; clients such as Terraform's provider read that property.
Assignments go to hosts (by moid) and to vCenter itself (its instance
UUID); a license in use cannot be removed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

EVALUATION_KEY = "00000-00000-00000-00000-00000"
_KEY_FORM = re.compile(r"[0-9A-Z]{5}(-[0-9A-Z]{5}){4}\Z")
LicenseInfo = vim.LicenseManager.LicenseInfo


def _evaluation() -> LicenseInfo:
    return LicenseInfo(licenseKey=EVALUATION_KEY, editionKey="eval", name="Evaluation Mode",
                       total=0, used=None, costUnit="", properties=[], labels=[])


def _decoded(key: str) -> LicenseInfo:
    return LicenseInfo(
        licenseKey=key, editionKey="esx.enterprisePlus.cpuPackage",
        name="vSphere 8 Enterprise Plus", total=32, costUnit="cpuPackage",
        properties=[vmodl.KeyAnyValue(key="ProductName", value="VMware ESX Server"),
                    vmodl.KeyAnyValue(key="ProductVersion", value="8.*")],
        labels=[])


class LicenseManager(ManagedObject):
    vim_type = vim.LicenseManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "LicenseManager")
        self.licenses: dict[str, LicenseInfo] = {EVALUATION_KEY: _evaluation()}

    def used(self, key: str) -> int:
        return sum(1 for assigned in self.sim.license_assignments.assigned.values()
                   if assigned == key)

    def info(self, key: str) -> LicenseInfo:
        info = self.licenses[key]
        if key != EVALUATION_KEY:
            info.used = self.used(key)
        return info

    def _get_licenses(self):
        return [self.info(key) for key in self.licenses]

    def _get_evaluation(self):
        return vim.LicenseManager.EvaluationInfo(properties=[
            vmodl.KeyAnyValue(key="expirationHours", value=1440),
            vmodl.KeyAnyValue(key="expirationMinutes", value=0)])

    def _get_source(self):
        return vim.EvaluationLicenseSource(remainingHours=1440)

    def _get_sourceAvailable(self):  # noqa: N802
        return True

    def _get_licenseAssignmentManager(self):  # noqa: N802
        return self.sim.license_assignments.ref

    def DecodeLicense(self, ctx: CallContext, licenseKey: str):  # noqa: N802,N803
        if licenseKey == EVALUATION_KEY:
            return _evaluation()
        if not _KEY_FORM.match(licenseKey or ""):
            return LicenseInfo(licenseKey=licenseKey or "", editionKey="", name="Unknown",
                               total=0, costUnit="", properties=[vmodl.KeyAnyValue(
                                   key="diagnostic", value="License key is invalid")])
        return _decoded(licenseKey)

    def AddLicense(self, ctx: CallContext, licenseKey: str, labels=None):  # noqa: N802,N803
        info = self.DecodeLicense(ctx, licenseKey)
        if not info.editionKey:
            return info  # the diagnostic says why; nothing added
        with self.sim.registry.lock:
            existing = self.licenses.get(licenseKey)
            if existing is None:
                info.labels = list(labels or [])
                self.licenses[licenseKey] = info
                self.sim.registry.touch()
            return self.info(licenseKey)

    def UpdateLicense(self, ctx: CallContext, licenseKey: str, labels=None):  # noqa: N802,N803
        return self.AddLicense(ctx, licenseKey, labels)

    def _licensed(self, key: str) -> LicenseInfo:
        info = self.licenses.get(key)
        if info is None:
            raise invalid_argument("licenseKey", f"The license {key} is not installed")
        return info

    def RemoveLicense(self, ctx: CallContext, licenseKey: str) -> None:  # noqa: N802,N803
        with self.sim.registry.lock:
            self._licensed(licenseKey)
            if licenseKey == EVALUATION_KEY or self.used(licenseKey):
                raise invalid_argument("licenseKey", f"The license {licenseKey} is in use")
            del self.licenses[licenseKey]
            self.sim.registry.touch()

    def UpdateLicenseLabel(self, ctx: CallContext, licenseKey: str, labelKey: str,  # noqa: N802,N803
                           labelValue: str) -> None:  # noqa: N803
        with self.sim.registry.lock:
            info = self._licensed(licenseKey)
            labels = [label for label in info.labels or [] if label.key != labelKey]
            labels.append(vim.KeyValue(key=labelKey, value=labelValue))
            info.labels = labels
            self.sim.registry.touch()

    def RemoveLicenseLabel(self, ctx: CallContext, licenseKey: str,  # noqa: N802,N803
                           labelKey: str) -> None:  # noqa: N803
        with self.sim.registry.lock:
            info = self._licensed(licenseKey)
            info.labels = [label for label in info.labels or [] if label.key != labelKey]
            self.sim.registry.touch()


class LicenseAssignmentManager(ManagedObject):
    vim_type = vim.LicenseAssignmentManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "LicenseAssignmentManager")
        #: entity id (a host's moid, vCenter's instance UUID) -> license key.
        self.assigned: dict[str, str] = {}

    def _entities(self) -> dict[str, tuple[str, str]]:
        """entity id -> (display name, scope) of everything that takes a license."""
        found = {self.sim.instance_uuid: ("vCenter Server", "")}
        for host in self.sim.hosts():
            found[host.moid] = (host.name, "")
        return found

    def _assignment(self, entity_id: str, name: str) -> Any:
        key = self.assigned.get(entity_id, EVALUATION_KEY)
        return vim.LicenseAssignmentManager.LicenseAssignment(
            entityId=entity_id, entityDisplayName=name,
            assignedLicense=self.sim.licenses.info(key), properties=[])

    def QueryAssignedLicenses(self, ctx: CallContext, entityId=None):  # noqa: N802,N803
        with self.sim.registry.lock:
            entities = self._entities()
            ids = [entityId] if entityId else list(entities)
            return [self._assignment(i, entities[i][0]) for i in ids if i in entities]

    def _entity(self, entity_id: str) -> str:
        entities = self._entities()
        if entity_id not in entities:
            raise vim.fault.LicenseEntityNotFound(entityId=entity_id,
                                                  msg=f"No licensed entity {entity_id}")
        return entities[entity_id][0]

    def UpdateAssignedLicense(self, ctx: CallContext, entity: str, licenseKey: str,  # noqa: N802,N803
                              entityDisplayName=None):  # noqa: N803
        with self.sim.registry.lock:
            self._entity(entity)
            self.sim.licenses._licensed(licenseKey)
            if licenseKey == EVALUATION_KEY:
                self.assigned.pop(entity, None)
            else:
                self.assigned[entity] = licenseKey
            self.sim.registry.touch()
            return self.sim.licenses.info(licenseKey)

    def RemoveAssignedLicense(self, ctx: CallContext, entityId: str) -> None:  # noqa: N802,N803
        with self.sim.registry.lock:
            self._entity(entityId)
            self.assigned.pop(entityId, None)
            self.sim.registry.touch()
