"""What initial placement is asked (a new VM) and what it answers (a host, or why not).

A leaf module: :mod:`.placement` decides and :mod:`.room` makes room, and
both speak in these types without importing each other's decisions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from nova_vsphere_driver.drs.moves import Move
from nova_vsphere_driver.drs.rules import HostPin, RequestRule

#: Default cap on the migrations planned to make room for one new VM.
DEFAULT_ROOM_MOVES = 4


@dataclasses.dataclass(frozen=True)
class PlacementRequest:
    """A new VM to place.

    ``cpu_demand_mhz`` None: estimated as vCPUs times the cluster's mean
    demand per powered-on vCPU.  ``rules`` are the server-group rules the VM
    brings (e.g. anti-affinity with VMs X, Y, must).  ``host_group`` pins it
    to a host group (a must rule); ``host_pins`` are further must VM-host
    rules (e.g. the ones every new VM of the cluster honours).  The host must
    mount every datastore in ``datastores`` and at least one in
    ``any_datastore`` (when given).
    """

    instance_id: str
    vcpus: int
    memory_mb: int
    cpu_demand_mhz: float | None = None
    rules: tuple[RequestRule, ...] = ()
    host_group: str | None = None
    datastores: frozenset[str] = frozenset()
    any_datastore: frozenset[str] = frozenset()
    name: str = ""
    host_pins: tuple[HostPin, ...] = ()

    def __post_init__(self) -> None:
        for field in ("datastores", "any_datastore"):
            value = getattr(self, field)
            if not isinstance(value, frozenset):
                object.__setattr__(self, field, frozenset(value))
        for field in ("rules", "host_pins"):
            if not isinstance(getattr(self, field), tuple):
                object.__setattr__(self, field, tuple(getattr(self, field)))
        if self.vcpus < 1 or self.memory_mb < 0:
            raise ValueError("a VM needs at least one vCPU and non-negative memory")

    @property
    def pins(self) -> tuple[HostPin, ...]:
        """Every host-group pin the VM honours (``host_group`` first)."""
        first = (HostPin(self.host_group),) if self.host_group is not None else ()
        return first + self.host_pins

    def describe(self) -> str:
        return f"{self.name or self.instance_id} ({self.vcpus} vCPUs, {self.memory_mb} MB)"


@dataclasses.dataclass(frozen=True)
class PlacementResult:
    """The chosen host (``host_id`` None: no host fits, ``reason`` says why).

    ``moves`` are migrations that must complete first (making room; see
    :mod:`~nova_vsphere_driver.drs.room`).  ``rejections`` maps host names
    to why each was not chosen as is.
    """

    host_id: str | None
    reason: str
    imbalance_before: float
    imbalance_after: float
    host_name: str | None = None
    moves: tuple[Move, ...] = ()
    rejections: Mapping[str, str] = dataclasses.field(default_factory=dict)
    broken_should_rules: tuple[str, ...] = ()
    #: No host fits as is although the usable hosts' free capacity adds up.
    fragmented: bool = False
    #: A must anti-affinity rule no host of this cluster can satisfy: its
    #: members already occupy every usable host the VM may run on.
    unsatisfiable_rule: str | None = None

    @property
    def ok(self) -> bool:
        return self.host_id is not None
