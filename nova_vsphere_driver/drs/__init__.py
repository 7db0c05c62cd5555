"""Pure-Python DRS: placement, balancing, evacuation and rules inside one cluster.

Everything here is a deterministic function of a :class:`ClusterSnapshot`
(plus in-flight :class:`Claims`); nothing talks to vCenter.  ``vsphere/``
builds snapshots and carries out the results.
"""

from nova_vsphere_driver.drs.balancer import THRESHOLDS, BalancePlan, balance
from nova_vsphere_driver.drs.claims import Claim, Claims
from nova_vsphere_driver.drs.costs import MoveCost, VMotionTiming
from nova_vsphere_driver.drs.evacuation import EvacuationError, EvacuationPlan, evacuate
from nova_vsphere_driver.drs.model import (
    DEFAULT_LIMITS,
    VM,
    ClusterSnapshot,
    Host,
    HostGroup,
    HostState,
    HostUsage,
    Limits,
    PowerState,
    VMGroup,
    VMHostRule,
    VMVMRule,
    host_usage,
    imbalance,
    load_weights,
    normalized_loads,
)
from nova_vsphere_driver.drs.moves import Move, MoveKind
from nova_vsphere_driver.drs.placement import make_room, place
from nova_vsphere_driver.drs.placement_request import PlacementRequest, PlacementResult
from nova_vsphere_driver.drs.policies import Policy, available_policies, load_policy
from nova_vsphere_driver.drs.room import MaxUnit, max_unit
from nova_vsphere_driver.drs.rules import HostPin, RequestRule
from nova_vsphere_driver.drs.waves import InfeasiblePlanError, schedule_waves

__all__ = [
    "DEFAULT_LIMITS", "THRESHOLDS", "VM", "BalancePlan", "Claim", "Claims", "ClusterSnapshot",
    "EvacuationError", "EvacuationPlan", "Host", "HostGroup", "HostPin", "HostState",
    "HostUsage", "InfeasiblePlanError", "Limits", "MaxUnit", "Move", "MoveCost", "MoveKind",
    "PlacementRequest", "PlacementResult", "Policy", "PowerState", "RequestRule", "VMGroup",
    "VMHostRule", "VMVMRule", "VMotionTiming", "available_policies", "balance", "evacuate",
    "host_usage", "imbalance", "load_policy", "load_weights", "make_room", "max_unit",
    "normalized_loads", "place", "schedule_waves",
]
