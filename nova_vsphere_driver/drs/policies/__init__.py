"""Placement/balancing policies, loaded by name through stevedore."""

from __future__ import annotations

import functools

from stevedore import driver, extension
from stevedore import exception as stevedore_exc

from nova_vsphere_driver.drs.policies.balanced import BalancedPolicy
from nova_vsphere_driver.drs.policies.base import Candidate, Policy

NAMESPACE = "nova_vsphere_driver.drs.policies"
DEFAULT_POLICY = "balanced"

__all__ = ["Candidate", "Policy", "NAMESPACE", "DEFAULT_POLICY", "available_policies",
           "load_policy", "resolve_policy"]


def available_policies() -> list[str]:
    """Names registered in the policy entry-point namespace."""
    return sorted(extension.ExtensionManager(NAMESPACE).names())


@functools.cache
def load_policy(name: str) -> Policy:
    """The policy registered as ``name`` (instances are stateless and shared).

    Raises ValueError naming the unknown policy and the available ones.
    """
    try:
        manager = driver.DriverManager(NAMESPACE, name, invoke_on_load=True)
    except (stevedore_exc.NoMatches, RuntimeError) as exc:
        raise ValueError(f"unknown DRS policy {name!r}; available: "
                         f"{', '.join(available_policies()) or 'none'}") from exc
    policy = manager.driver
    if not isinstance(policy, Policy):
        raise ValueError(f"DRS policy {name!r} is not a Policy: {type(policy).__name__}")
    return policy


def resolve_policy(policy: Policy | str | None) -> Policy:
    """Accept a Policy, a policy name, or None for the default."""
    if policy is None:
        return _default(BalancedPolicy)
    if isinstance(policy, str):
        return load_policy(policy)
    return policy


@functools.cache
def _default(cls: type) -> Policy:
    return cls()
