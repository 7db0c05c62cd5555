import pytest

from nova_vsphere_driver.drs import available_policies, load_policy
from nova_vsphere_driver.drs.policies import Policy
from nova_vsphere_driver.drs.policies.balanced import BalancedPolicy
from nova_vsphere_driver.drs.policies.packed import PackedPolicy


def test_policies_load_through_stevedore():
    assert {"balanced", "packed"} <= set(available_policies())
    assert isinstance(load_policy("balanced"), BalancedPolicy)
    assert isinstance(load_policy("packed"), PackedPolicy)
    assert load_policy("packed").balances_load is False
    assert load_policy("balanced").balances_load is True
    assert isinstance(load_policy("balanced"), Policy)


def test_unknown_policy_names_the_available_ones():
    with pytest.raises(ValueError) as err:
        load_policy("spready")
    assert "'spready'" in str(err.value)
    assert "balanced" in str(err.value) and "packed" in str(err.value)
