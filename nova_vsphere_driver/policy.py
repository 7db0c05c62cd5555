"""Pure instance policy: what a flavor and a server group ask of vCenter and of our DRS.

No vCenter, no Nova database: functions of Nova objects already in hand
(flavor, instance, server group), shared by spawn, resize and live
migration so that each asks for the same thing. Datastore choice is its
sibling, :mod:`nova_vsphere_driver.datastore_selection`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from nova import exception

from nova_vsphere_driver import drs, extra_specs
from nova_vsphere_driver.vsphere.cluster_state import ClusterState
from nova_vsphere_driver.vsphere.rules import server_group_rule_name
from nova_vsphere_driver.vsphere.vm import ResourceSettings

#: Nova server group policy -> (affinity, mandatory) of its DRS VM-VM rule.
GROUP_POLICIES = {
    "anti-affinity": (False, True),
    "soft-anti-affinity": (False, False),
    "affinity": (True, True),
    "soft-affinity": (True, False),
}


def flavor_settings(flavor) -> extra_specs.FlavorSettings:
    """The flavor's ``vsphere:`` (and in-tree ``quota:``) extra specs, validated.

    InvalidInput (Nova then aborts a build instead of rescheduling it: no
    other host can take this flavor either) for a bad value or combination.
    """
    memory_mb = getattr(flavor, "memory_mb", None)
    try:
        return extra_specs.parse(dict(getattr(flavor, "extra_specs", None) or {}),
                                 memory_mb=int(memory_mb) if memory_mb is not None else None)
    except extra_specs.InvalidExtraSpec as exc:
        raise exception.InvalidInput(reason=str(exc)) from None


def eligible_hosts(flavor, settings: extra_specs.FlavorSettings, state: ClusterState,
                   hw_versions: Mapping[str, frozenset[str]] | None) -> frozenset[str] | None:
    """The usable hosts of ``state`` the flavor's extra specs allow (None: every one).

    ``vsphere:hw_version`` needs a host that can create VMs of that version
    (``hw_versions``: version -> hosts, as vCenter's environment browser
    says; None: not known, not checked); ``vsphere:cpu_reservation`` a host
    where the flavor's vCPUs can use that much (vCPUs times MHz per core).
    ComputeResourcesUnavailable naming the extra spec when no usable host of
    the cluster qualifies: another cluster may.
    """
    usable = state.usable_hosts()
    if not usable:
        return None  # placement says why better: no host is usable at all
    allowed = {h.moref for h in usable}
    where = f"cluster {state.ref.name}"
    version = settings.hw_version
    if version and hw_versions is not None:
        supporting = allowed & hw_versions.get(version, frozenset())
        if not supporting:
            known = sorted(v for v, hosts in hw_versions.items() if hosts & allowed)
            raise exception.ComputeResourcesUnavailable(
                reason=f"{where}: flavor {flavor.name} asks for virtual hardware {version} "
                f"(hw_version), which no usable host supports (they create "
                f"{_version_span(known)})")
        allowed = supporting
    reservation, vcpus = settings.cpu_reservation, int(flavor.vcpus)
    if reservation:
        fast = {h.moref for h in usable if h.mhz * vcpus >= reservation} & allowed
        if not fast:
            best = max(h.mhz for h in usable if h.moref in allowed)
            raise exception.ComputeResourcesUnavailable(
                reason=f"{where}: flavor {flavor.name} reserves {reservation} MHz "
                f"(cpu_reservation) for {vcpus} vCPU(s), more than they can use on any "
                f"usable host (at most {vcpus} x {best} MHz)")
        allowed = fast
    return None if len(allowed) == len(usable) else frozenset(allowed)


def _version_span(versions: list[str]) -> str:
    """"vmx-04 to vmx-19": the lowest and highest of ``versions``."""
    if not versions:
        return "no version vCenter reports"
    ordered = sorted(versions, key=lambda v: int(re.sub(r"\D", "", v) or 0))
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]} to {ordered[-1]}"


def resource_settings(settings: extra_specs.FlavorSettings) -> ResourceSettings:
    """The VM's CPU and memory limits, reservations and shares of the flavor."""
    return ResourceSettings(
        cpu_limit=settings.cpu_limit, cpu_reservation=settings.cpu_reservation,
        cpu_shares_level=settings.cpu_shares_level, cpu_shares=settings.cpu_shares_share,
        memory_limit=settings.memory_limit, memory_reservation=settings.memory_reservation,
        memory_shares_level=settings.memory_shares_level,
        memory_shares=settings.memory_shares_share)


def group_rule(group) -> tuple[bool, bool] | None:
    """(affinity, mandatory) of the DRS rule for a Nova server group; None: no rule."""
    if group is None:
        return None
    return GROUP_POLICIES.get(group.policy)


#: Escapes of the characters a note value cannot hold as they are.
_NOTE_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def note_value(value) -> str:
    r"""``value`` as one line of a VM's notes, readable and unambiguous.

    A line break in a name would forge a line (``x`` LF ``project:admin``),
    a control character is not XML at all (vCenter could not even parse the
    request): they and the backslash are written as backslash escapes
    (``\n``, ``\x01``, ``\u2028``, ``\\``), as Python writes them. Text
    without them is unchanged.
    """
    out = []
    for char in "" if value is None else str(value):
        escaped = _NOTE_ESCAPES.get(char)
        if escaped is None and (unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")
                                or char in "\ufffe\uffff"):
            code = ord(char)
            escaped = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
        out.append(escaped if escaped is not None else char)
    return "".join(out)


def annotation(instance, flavor) -> str:
    """The VM's notes in vCenter: who it is to Nova (rewritten when the flavor changes).

    One ``key:value`` line per field, as Nova's in-tree driver writes its
    notes; each value escaped by :func:`note_value`, so that a reader
    splitting lines and then at the first ``:`` gets exactly these fields.
    """
    fields = (("name", instance.display_name), ("uuid", instance.uuid),
              ("project", instance.project_id), ("flavor", flavor.name))
    return "\n".join(f"{key}:{note_value(value)}" for key, value in fields)


def placement_request(instance, group, host_group: str | None,
                      host_pins: tuple[drs.HostPin, ...] = (),
                      **storage) -> drs.PlacementRequest:
    """What our DRS must place for ``instance``: its flavor's size, its group's rule,
    its host-group pin and further ``host_pins``; ``storage`` is ``any_datastore=`` or
    ``datastores=`` (morefs)."""
    flavor = instance.flavor
    rules = ()
    wanted = group_rule(group)
    if wanted is not None:
        affinity, mandatory = wanted
        others = frozenset(set(group.members or ()) - {instance.uuid})
        rules = (drs.RequestRule(others, affinity, mandatory,
                                 name=server_group_rule_name(group.uuid)),)
    return drs.PlacementRequest(
        instance_id=instance.uuid, vcpus=int(flavor.vcpus), memory_mb=int(flavor.memory_mb),
        rules=rules, host_group=host_group, name=instance.display_name or instance.uuid,
        host_pins=host_pins, **storage)
