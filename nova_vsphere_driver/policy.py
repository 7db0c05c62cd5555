"""Pure instance policy: what a flavor and a server group ask of vCenter and of our DRS.

No vCenter, no Nova database: functions of Nova objects already in hand
(flavor, instance, server group), shared by spawn, resize and live
migration so that each asks for the same thing. Datastore choice is its
sibling, :mod:`nova_vsphere_driver.datastore_selection`.
"""

from __future__ import annotations

from nova import exception

from nova_vsphere_driver import drs, extra_specs
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
    """The flavor's ``vsphere:`` (and in-tree ``quota:``) extra specs, validated."""
    try:
        return extra_specs.parse(dict(getattr(flavor, "extra_specs", None) or {}))
    except extra_specs.InvalidExtraSpec as exc:
        raise exception.InvalidRequest(str(exc)) from None


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


def annotation(instance, flavor) -> str:
    """The VM's notes in vCenter: who it is to Nova (rewritten when the flavor changes)."""
    return (f"name:{instance.display_name}\nuuid:{instance.uuid}\n"
            f"project:{instance.project_id}\nflavor:{flavor.name}")


def placement_request(instance, group, host_group: str | None,
                      **storage) -> drs.PlacementRequest:
    """What our DRS must place for ``instance``: its flavor's size, its group's rule,
    its host-group pin; ``storage`` is ``any_datastore=`` or ``datastores=`` (morefs)."""
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
        **storage)
