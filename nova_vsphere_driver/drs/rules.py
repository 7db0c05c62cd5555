"""Rule bookkeeping: which placements and migrations keep the cluster's rules.

Every rule gets a *violation count* so that "does this move break a rule?"
has a precise meaning that works even when a rule is already violated:

* anti-affinity: the number of members beyond the first on each host;
* affinity: the number of placed members not on the host holding most of
  them;
* VM-host: the number of group VMs on the wrong side of the host group.

A move is allowed when it increases no rule's count ("no move breaks a must
rule or newly breaks a should rule"); it *fixes* a rule when it decreases
that rule's count.  VMs count for rules whatever their power state: a
powered-off VM is registered on its host and will power on there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from nova_vsphere_driver.drs.model import ClusterSnapshot, VMHostRule, VMVMRule


@dataclasses.dataclass
class GroupRule:
    """A VM-VM rule over state indexes, with member counts per host."""

    rule: VMVMRule
    members: list[int]
    counts: dict[int, int]

    def violations(self) -> int:
        if self.rule.affinity:
            placed = sum(self.counts.values())
            return placed - max(self.counts.values(), default=0)
        return sum(c - 1 for c in self.counts.values() if c > 1)

    def delta(self, source: int, target: int) -> int:
        """Change of the violation count if one member moves source -> target.

        ``source`` -1 means the member is new (initial placement).
        """
        counts = self.counts
        if self.rule.affinity:
            before = self.violations()
            counts[target] = counts.get(target, 0) + 1
            if source >= 0:
                counts[source] -= 1
            after = self.violations()
            if source >= 0:
                counts[source] += 1
            counts[target] -= 1
            if not counts[target]:
                del counts[target]
            return after - before
        gain = 1 if counts.get(target, 0) >= 1 else 0
        loss = 1 if source >= 0 and counts.get(source, 0) >= 2 else 0
        return gain - loss

    def apply(self, source: int, target: int) -> None:
        if source >= 0:
            self.counts[source] -= 1
            if not self.counts[source]:
                del self.counts[source]
        if target >= 0:
            self.counts[target] = self.counts.get(target, 0) + 1


@dataclasses.dataclass(frozen=True)
class HostRule:
    """A VM-host rule as it applies to one VM (host group as state indexes)."""

    rule: VMHostRule
    hosts: frozenset[int]

    def violated(self, host: int) -> bool:
        return (host in self.hosts) != self.rule.affine


class RuleBook:
    """The rules of a snapshot over a planning state's VM and host indexes."""

    def __init__(self, snapshot: ClusterSnapshot, vm_index: Mapping[str, int],
                 host_index: Mapping[str, int], vm_host: list[int]) -> None:
        self.group_rules: list[GroupRule] = []
        self.by_vm: dict[int, list[int]] = {}
        for rule in sorted(snapshot.vm_vm_rules, key=lambda r: r.name):
            members = sorted({vm_index[ref] for ref in rule.vms if ref in vm_index})
            counts: dict[int, int] = {}
            for v in members:
                if vm_host[v] >= 0:
                    counts[vm_host[v]] = counts.get(vm_host[v], 0) + 1
            for v in members:
                self.by_vm.setdefault(v, []).append(len(self.group_rules))
            self.group_rules.append(GroupRule(rule, members, counts))
        self.host_rules_by_vm: dict[int, list[HostRule]] = {}
        self.host_rules: list[tuple[HostRule, list[int]]] = []
        for rule in sorted(snapshot.vm_host_rules, key=lambda r: r.name):
            group = snapshot.vm_group_by_name[rule.vm_group]
            hosts = snapshot.host_group_by_name[rule.host_group].hosts
            hrule = HostRule(rule, frozenset(host_index[h] for h in hosts if h in host_index))
            members = sorted({vm_index[ref] for ref in group.vms if ref in vm_index})
            for v in members:
                self.host_rules_by_vm.setdefault(v, []).append(hrule)
            self.host_rules.append((hrule, members))

    def constrained(self, v: int) -> bool:
        return v in self.by_vm or v in self.host_rules_by_vm

    def conflict(self, v: int, source: int, target: int, ignore: object = None,
                 must_only: bool = False) -> str | None:
        """Why moving VM ``v`` source -> target would break a rule (None: it would not).

        ``ignore`` is a rule whose count may change (the one a fix move
        repairs); ``must_only`` disregards should rules.
        """
        # Must rules first, so that a rejection names the hard blocker.
        for mandatory in (True,) if must_only else (True, False):
            for ri in self.by_vm.get(v, ()):
                g = self.group_rules[ri]
                if (g.rule is not ignore and g.rule.mandatory == mandatory
                        and g.delta(source, target) > 0):
                    return f"would break {g.rule.describe()}"
            for hr in self.host_rules_by_vm.get(v, ()):
                if (hr.rule is not ignore and hr.rule.mandatory == mandatory
                        and hr.violated(target) and (source < 0 or not hr.violated(source))):
                    return f"would break {hr.rule.describe()}"
        return None

    def apply(self, v: int, source: int, target: int) -> None:
        for ri in self.by_vm.get(v, ()):
            self.group_rules[ri].apply(source, target)

    def host_rule_violators(self, vm_host: list[int]) -> list[tuple[HostRule, list[int]]]:
        """(rule, its VMs currently on the wrong side) for violated VM-host rules."""
        out = []
        for hr, members in self.host_rules:
            bad = [v for v in members if vm_host[v] >= 0 and hr.violated(vm_host[v])]
            if bad:
                out.append((hr, bad))
        return out


@dataclasses.dataclass(frozen=True)
class RequestRule:
    """A rule a new VM brings with it, e.g. its server group's policy.

    ``vms`` are the other members (VM ids or instance UUIDs).
    """

    vms: frozenset[str]
    affinity: bool = False
    mandatory: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.vms, frozenset):
            object.__setattr__(self, "vms", frozenset(self.vms))

    def as_vm_vm_rule(self, instance_id: str) -> VMVMRule:
        return VMVMRule(self.name or ("affinity" if self.affinity else "anti-affinity"),
                        self.vms | {instance_id}, self.affinity, self.mandatory)


@dataclasses.dataclass(frozen=True)
class HostPin:
    """A must VM-host rule a new VM honours: run on (``affine``) or off ``host_group``."""

    host_group: str
    affine: bool = True

    def describe(self) -> str:
        if self.affine:
            return f"host group pin '{self.host_group}' (must)"
        return f"host group pin '{self.host_group}' (must run off it)"

    def allows(self, snapshot: ClusterSnapshot, host_id: str) -> bool:
        """Whether a VM with this pin may run on ``host_id`` (unknown group: nowhere)."""
        group = snapshot.host_group_by_name.get(self.host_group)
        return group is not None and (host_id in group.hosts) == self.affine


def unknown_pin(snapshot: ClusterSnapshot, pins: Iterable[HostPin]) -> HostPin | None:
    """The first pin naming a host group the cluster does not have, if any."""
    return next((p for p in pins if p.host_group not in snapshot.host_group_by_name), None)


@dataclasses.dataclass(frozen=True)
class HostRuleCheck:
    """How one candidate host fares against a new VM's rules."""

    must: tuple[str, ...] = ()  # mandatory rules it would break (host excluded)
    should: tuple[str, ...] = ()  # preferential rules it would break


def placement_rule_checks(snapshot: ClusterSnapshot, instance_id: str,
                          extra_rules: Iterable[RequestRule], pins: Iterable[HostPin],
                          host_ids: Iterable[str],
                          locate: Callable[[str], str | None]) -> dict[str, HostRuleCheck]:
    """Rules a new VM would break on each host; ``locate`` maps a VM ref to its host.

    Considers the request's own rules, snapshot VM-VM rules naming the
    instance, VM-host rules whose VM group contains it, and host-group pins
    (must rules).  Hosts without a problem are left out.
    """
    vm_rules = [r.as_vm_vm_rule(instance_id) for r in extra_rules]
    vm_rules += [r for r in snapshot.vm_vm_rules if instance_id in r.vms]
    host_rules: list[tuple[str, bool, bool, frozenset[str]]] = []
    for r in snapshot.vm_host_rules:
        if instance_id in snapshot.vm_group_by_name[r.vm_group].vms:
            hosts = snapshot.host_group_by_name[r.host_group].hosts
            host_rules.append((r.describe(), r.mandatory, r.affine, hosts))
    for pin in pins:
        group = snapshot.host_group_by_name.get(pin.host_group)
        if group is None:
            raise ValueError(f"unknown host group '{pin.host_group}'")
        host_rules.append((pin.describe(), True, pin.affine, group.hosts))
    if not vm_rules and not host_rules:
        return {}

    per_rule: list[tuple[VMVMRule, dict[str, list[str]]]] = []
    for rule in vm_rules:
        where: dict[str, list[str]] = {}
        for ref in sorted(rule.vms - {instance_id}):
            host = locate(ref)
            if host is not None:
                where.setdefault(host, []).append(ref)
        per_rule.append((rule, where))

    checks: dict[str, HostRuleCheck] = {}
    for host in host_ids:
        must: list[str] = []
        should: list[str] = []
        for rule, where in per_rule:
            if rule.affinity:
                top = max((len(v) for v in where.values()), default=0)
                broken = top > 0 and len(where.get(host, ())) < top
                detail = "its members run elsewhere" if broken else ""
            else:
                broken = host in where
                detail = f"{', '.join(where.get(host, ()))} already here" if broken else ""
            if broken:
                (must if rule.mandatory else should).append(f"{rule.describe()}: {detail}")
        for text, mandatory, affine, hosts in host_rules:
            if (host in hosts) != affine:
                (must if mandatory else should).append(text)
        if must or should:
            checks[host] = HostRuleCheck(tuple(must), tuple(should))
    return checks
