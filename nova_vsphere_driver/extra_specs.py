"""Flavor extra specs read by the vSphere driver (namespace ``vsphere:``).

Two consumers, one table (:data:`SPECS`):

* :func:`parse` turns a flavor's extra specs into a typed
  :class:`FlavorSettings`, or raises :class:`InvalidExtraSpec` naming the
  key, the value and what is allowed. The driver calls it at spawn, before
  it creates anything in vCenter.
* :func:`register` is the ``nova.api.extra_spec_validators`` entry point:
  Nova's API (microversion 2.86 and later) then rejects a bad value or an
  unknown ``vsphere:`` key (a typo such as ``vsphere:cpu_limt``) when the
  extra spec is set on the flavor.

Nova's in-tree names are accepted as aliases: ``quota:cpu_limit`` and the
other ``quota:{cpu,memory}_*`` keys of Nova's VMware driver,
``vmware:hw_version`` and ``vmware:storage_policy``. Nova validates those
namespaces itself, so they are not registered here. Where a ``vsphere:``
key and its alias are both set, the ``vsphere:`` key wins and the alias is
ignored. Alias values keep Nova's
documented meaning: ``quota:*_limit = 0`` means unlimited (``-1`` here), and
``quota:*_shares_share`` is ignored unless the shares level is ``custom``.

Checks that involve two keys or the flavor cannot be made by Nova's per-key
validators (they see neither the other keys nor the flavor) and are made by
:func:`parse` only: a ``*_shares_share`` needs the level ``custom`` (and
``custom`` needs a share count), a reservation may not exceed a limit, the
memory reservation may not exceed the flavor's memory, and
``host_group_rule`` needs a ``host_group``. What depends on the cluster -- a
CPU reservation the flavor's vCPUs can use on some host, a hardware version
some host supports -- is checked at spawn and resize
(:func:`nova_vsphere_driver.policy.eligible_hosts`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

NAMESPACE = "vsphere"

SHARES_LEVELS = ("low", "normal", "high", "custom")
HOST_GROUP_RULES = ("must", "should")
DEFAULT_HOST_GROUP_RULE = "must"

#: ``-1`` (unlimited) or a positive number below 10**18 (vSphere's xsd:long).
#: A limit of 0 is refused: it would keep the VM from running at all, and
#: Nova's ``quota:*_limit = 0`` means "unlimited", which would confuse.
LIMIT_PATTERN = r"-1|[1-9][0-9]{0,17}"
#: The hardware version (virtual machine version) key, e.g. ``vmx-19``.
HW_VERSION_PATTERN = r"vmx-[0-9]{2}"
#: A DRS host group name: not empty, no leading or trailing white space.
HOST_GROUP_PATTERN = r"\S(?:.*\S)?"
#: A storage policy name: the same.
STORAGE_POLICY_PATTERN = HOST_GROUP_PATTERN
MAX_LONG = 2**63 - 1
MAX_INT = 2**31 - 1


class InvalidExtraSpec(ValueError):
    """A flavor extra spec the driver cannot honour."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"flavor extra spec {key}={value!r} is invalid: {allowed}")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One ``vsphere:`` extra spec: how Nova validates it and what it means."""

    name: str                 # without the namespace, e.g. "cpu_limit"
    kind: str                 # "limit", "reservation", "shares_level", "shares_share",
    #                           "host_group", "host_group_rule", "hw_version",
    #                           "storage_policy"
    description: str
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{NAMESPACE}:{self.name}"

    @property
    def value(self) -> dict[str, Any]:
        """The ``value`` definition of Nova's ``ExtraSpecValidator``."""
        if self.kind == "limit":
            return {"type": str, "pattern": LIMIT_PATTERN,
                    "description": "-1 for unlimited, or a positive integer"}
        if self.kind == "reservation":
            return {"type": int, "min": 0, "max": MAX_LONG}
        if self.kind == "shares_share":
            return {"type": int, "min": 0, "max": MAX_INT}
        if self.kind == "shares_level":
            return {"type": str, "enum": list(SHARES_LEVELS)}
        if self.kind == "host_group_rule":
            return {"type": str, "enum": list(HOST_GROUP_RULES)}
        if self.kind == "hw_version":
            return {"type": str, "pattern": HW_VERSION_PATTERN,
                    "description": "vmx- and two digits, e.g. vmx-19"}
        if self.kind == "host_group":
            return {"type": str, "pattern": HOST_GROUP_PATTERN,
                    "description": "the name of a DRS host group"}
        if self.kind == "storage_policy":
            return {"type": str, "pattern": STORAGE_POLICY_PATTERN,
                    "description": "the name of a vCenter storage policy"}
        raise AssertionError(f"unknown kind {self.kind!r}")


def _resource_specs(resource: str, unit: str) -> list[Spec]:
    return [
        Spec(f"{resource}_limit", "limit",
             f"Upper limit of the instance's {resource} in {unit}, even when more is "
             f"free; -1 means unlimited.", (f"quota:{resource}_limit",)),
        Spec(f"{resource}_reservation", "reservation",
             f"{resource.capitalize()} in {unit} guaranteed to the instance. "
             f"Must not exceed {NAMESPACE}:{resource}_limit, nor "
             + ("the flavor's memory." if resource == "memory" else
                "what the flavor's vCPUs can use (vCPUs times the host's MHz per core; "
                "hosts where they cannot are not used)."),
             (f"quota:{resource}_reservation",)),
        Spec(f"{resource}_shares_level", "shares_level",
             f"Relative {resource} priority under contention: low, normal, high, or "
             f"custom (then set {NAMESPACE}:{resource}_shares_share).",
             (f"quota:{resource}_shares_level",)),
        Spec(f"{resource}_shares_share", "shares_share",
             f"Number of {resource} shares; only with "
             f"{NAMESPACE}:{resource}_shares_level=custom.",
             (f"quota:{resource}_shares_share",)),
    ]


SPECS: tuple[Spec, ...] = (
    *_resource_specs("cpu", "MHz"),
    *_resource_specs("memory", "MB"),
    Spec("host_group", "host_group",
         "Name of a DRS host group of the cluster: the instance must (or should, see "
         f"{NAMESPACE}:host_group_rule) run on a host of that group."),
    Spec("host_group_rule", "host_group_rule",
         f"must (default) or should: whether {NAMESPACE}:host_group is a hard or a "
         "soft rule."),
    Spec("hw_version", "hw_version",
         "Virtual hardware version of the instance, e.g. vmx-19; hosts that cannot "
         "create VMs of that version are not used, and a cluster without one is "
         "refused.", ("vmware:hw_version",)),
    Spec("storage_policy", "storage_policy",
         "Name of the vCenter storage policy (SPBM) of the instance's disks, instead of "
         "[vsphere] pbm_default_policy; its files go to datastores compatible with it. "
         "Needs [vsphere] pbm_enabled.", ("vmware:storage_policy",)),
)

_BY_NAME = {spec.name: spec for spec in SPECS}


@dataclasses.dataclass(frozen=True)
class FlavorSettings:
    """The ``vsphere:`` settings of a flavor; ``None`` where not set."""

    cpu_limit: int | None = None            # MHz, -1 unlimited
    cpu_reservation: int | None = None      # MHz
    cpu_shares_level: str | None = None     # low|normal|high|custom
    cpu_shares_share: int | None = None     # only with level custom
    memory_limit: int | None = None         # MB, -1 unlimited
    memory_reservation: int | None = None   # MB
    memory_shares_level: str | None = None
    memory_shares_share: int | None = None
    host_group: str | None = None
    host_group_rule: str | None = None      # must|should; "must" when host_group is set
    hw_version: str | None = None           # vmx-NN
    storage_policy: str | None = None       # a vCenter storage policy's name


def _allowed(spec: Spec) -> str:
    value = spec.value
    if spec.kind == "limit":
        return "allowed: -1 (unlimited) or a positive integer"
    if "enum" in value:
        return "allowed: " + ", ".join(value["enum"])
    if value["type"] is int:
        return f"allowed: an integer from {value['min']} to {value['max']}"
    return f"allowed: {value['description']} (pattern {value['pattern']})"


def _convert(spec: Spec, key: str, raw: Any) -> Any:
    """Check one value as Nova's validator for ``spec`` does, and type it."""
    text = raw if isinstance(raw, str) else str(raw)
    value = spec.value
    if value["type"] is int:
        try:
            number = int(text)
        except ValueError:
            raise InvalidExtraSpec(key, raw, _allowed(spec)) from None
        if not value["min"] <= number <= value["max"]:
            raise InvalidExtraSpec(key, raw, _allowed(spec))
        return number
    if "enum" in value:
        if text not in value["enum"]:
            raise InvalidExtraSpec(key, raw, _allowed(spec))
        return text
    if not re.fullmatch(value["pattern"], text):
        raise InvalidExtraSpec(key, raw, _allowed(spec))
    return int(text) if spec.kind == "limit" else text


def _convert_alias(spec: Spec, key: str, raw: Any) -> Any:
    """An in-tree alias, with Nova's in-tree meaning."""
    if spec.kind == "limit":
        # Nova's quota:*_limit: 0 (its documented "no limit") and -1 are unlimited.
        try:
            number = int(raw)
        except (TypeError, ValueError):
            number = None
        if number is None or not -1 <= number <= MAX_LONG:
            raise InvalidExtraSpec(key, raw, "allowed: 0 or -1 (unlimited) or a positive "
                                   "integer")
        return -1 if number in (0, -1) else number
    return _convert(spec, key, raw)


def parse(extra_specs: Mapping[str, str], memory_mb: int | None = None) -> FlavorSettings:
    """The driver's settings from a flavor's extra specs.

    Keys of other namespaces are ignored (Nova validates those). Raises
    :class:`InvalidExtraSpec` for an unknown ``vsphere:`` key, a bad value,
    a bad combination, or (given the flavor's ``memory_mb``) a memory
    reservation larger than the flavor's memory. Nova's API validator sees
    one key at a time and not the flavor: those checks are made here only.
    """
    specs = extra_specs or {}
    prefix = f"{NAMESPACE}:"
    for key in specs:
        if key.startswith(prefix) and key[len(prefix):] not in _BY_NAME:
            raise InvalidExtraSpec(key, specs[key], "unknown key; known "
                                   f"{NAMESPACE}: keys: " + ", ".join(_BY_NAME))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}     # field -> the key the value came from
    for spec in SPECS:
        if spec.key in specs:
            values[spec.name] = _convert(spec, spec.key, specs[spec.key])
            sources[spec.name] = spec.key
            continue
        for alias in spec.aliases:
            if alias in specs:
                values[spec.name] = _convert_alias(spec, alias, specs[alias])
                sources[spec.name] = alias
                break

    for resource in ("cpu", "memory"):
        level_field, share_field = f"{resource}_shares_level", f"{resource}_shares_share"
        level = values.get(level_field)
        if share_field in values and level != "custom":
            share_key = sources[share_field]
            if share_key.startswith(prefix):
                shown = f"{sources[level_field]}={level}" if level else "unset"
                raise InvalidExtraSpec(
                    share_key, specs[share_key],
                    f"only allowed with {prefix}{level_field}=custom (it is {shown})")
            # Nova documents quota:*_shares_share as ignored unless the level is custom.
            del values[share_field]
        if level == "custom" and share_field not in values:
            level_key = sources[level_field]
            raise InvalidExtraSpec(level_key, specs[level_key],
                                   f"custom needs {prefix}{share_field} (the number of "
                                   "shares)")
        limit = values.get(f"{resource}_limit")
        reservation = values.get(f"{resource}_reservation")
        if limit is not None and limit != -1 and reservation is not None \
                and reservation > limit:
            reservation_key = sources[f"{resource}_reservation"]
            raise InvalidExtraSpec(
                reservation_key, specs[reservation_key],
                f"must not exceed {sources[f'{resource}_limit']}={limit}")
        if resource == "memory" and memory_mb is not None and reservation is not None \
                and reservation > memory_mb:
            # vCenter refuses it: a VM cannot hold more memory than it has.
            reservation_key = sources["memory_reservation"]
            raise InvalidExtraSpec(reservation_key, specs[reservation_key],
                                   f"must not exceed the flavor's memory, {memory_mb} MB")

    if "host_group_rule" in values and "host_group" not in values:
        raise InvalidExtraSpec(sources["host_group_rule"], specs[sources["host_group_rule"]],
                               f"only allowed together with {prefix}host_group")
    if "host_group" in values:
        values.setdefault("host_group_rule", DEFAULT_HOST_GROUP_RULE)
    return FlavorSettings(**values)


def register() -> list:
    """Validators for Nova's API (entry point ``nova.api.extra_spec_validators``).

    Registering any ``vsphere:`` key makes Nova treat ``vsphere`` as a known
    namespace: keys of it that are not listed here are rejected.
    """
    from nova.api.validation.extra_specs import base

    return [base.ExtraSpecValidator(name=spec.key, description=spec.description,
                                    value=spec.value) for spec in SPECS]
