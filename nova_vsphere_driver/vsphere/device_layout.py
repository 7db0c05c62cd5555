"""Where a new VM's disks and CD-ROM drives go: controllers, bus and unit numbers.

Pure bookkeeping for one CreateVM_Task spec, in the order devices are asked
for (the root disk first, then volumes, ephemeral and swap disks, then CD-ROM
drives), as Nova's in-tree driver attaches them one by one:

* a SCSI disk goes on the first controller of its adapter type with a free
  unit (0-15 but 7, the controller's own), a new controller of that type
  taking the next free bus (0-3) when there is none;
* an IDE disk or a CD-ROM drive goes on the first free unit (0, 1) of the two
  IDE controllers vCenter gives every new VM (keys 200 and 201).

Temporary keys of the new controllers are negative, as vCenter asks; it
gives the real ones and moves the devices placed on them along.
"""

from __future__ import annotations

import dataclasses

#: Adapter type (the ``vmware_adaptertype`` image property's words) -> the
#: SCSI controller's vim type; IDE disks use the VM's own IDE controllers.
SCSI_CONTROLLER_TYPES = {
    "lsiLogic": "VirtualLsiLogicController",
    "lsiLogicsas": "VirtualLsiLogicSASController",
    "busLogic": "VirtualBusLogicController",
    "paraVirtual": "ParaVirtualSCSIController",
}
IDE = "ide"
SCSI_BUSES = 4
SCSI_UNITS = tuple(u for u in range(16) if u != 7)
#: The two IDE controllers of every new VM, two units each.
IDE_CONTROLLER_KEYS = (200, 201)
IDE_UNITS = (0, 1)
#: Temporary key of the first new SCSI controller; later ones count down by ten.
FIRST_CONTROLLER_KEY = -100


class NoFreeSlot(ValueError):
    """The VM has no controller slot left for a device (``maximum``: how many fit)."""

    def __init__(self, message: str, maximum: int) -> None:
        super().__init__(message)
        self.maximum = maximum


@dataclasses.dataclass(frozen=True)
class NewController:
    """A SCSI controller the spec adds."""

    key: int
    adapter_type: str
    bus: int

    @property
    def vim_type(self) -> str:
        return SCSI_CONTROLLER_TYPES[self.adapter_type]


@dataclasses.dataclass(frozen=True)
class Slot:
    controller_key: int
    unit: int


class DeviceLayout:
    """Hands out controller slots for the devices of one new VM."""

    def __init__(self) -> None:
        #: Controllers to add, in bus order.
        self.controllers: list[NewController] = []
        self._used: dict[int, set[int]] = {}

    def _take(self, key: int, units) -> int | None:
        used = self._used.setdefault(key, set())
        for unit in units:
            if unit not in used:
                used.add(unit)
                return unit
        return None

    def ide_slot(self) -> Slot:
        """An IDE unit for a disk or a CD-ROM drive."""
        for key in IDE_CONTROLLER_KEYS:
            unit = self._take(key, IDE_UNITS)
            if unit is not None:
                return Slot(key, unit)
        maximum = len(IDE_CONTROLLER_KEYS) * len(IDE_UNITS)
        raise NoFreeSlot(f"the VM's IDE controllers hold {maximum} devices (disks and CD-ROM "
                         "drives together); use a SCSI adapter type for its disks", maximum)

    def disk_slot(self, adapter_type: str) -> Slot:
        """A unit for a disk on a controller of ``adapter_type`` (added when needed)."""
        if adapter_type == IDE:
            return self.ide_slot()
        if adapter_type not in SCSI_CONTROLLER_TYPES:
            raise ValueError(f"unknown adapter type {adapter_type!r}")
        for controller in self.controllers:
            if controller.adapter_type == adapter_type:
                unit = self._take(controller.key, SCSI_UNITS)
                if unit is not None:
                    return Slot(controller.key, unit)
        if len(self.controllers) == SCSI_BUSES:
            maximum = SCSI_BUSES * len(SCSI_UNITS)
            raise NoFreeSlot(f"the VM has {SCSI_BUSES} SCSI controllers, all of them full or "
                             f"of other adapter types than {adapter_type}", maximum)
        controller = NewController(key=FIRST_CONTROLLER_KEY - 10 * len(self.controllers),
                                   adapter_type=adapter_type, bus=len(self.controllers))
        self.controllers.append(controller)
        return Slot(controller.key, self._take(controller.key, SCSI_UNITS))
