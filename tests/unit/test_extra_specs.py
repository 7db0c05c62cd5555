"""Flavor extra specs: parse() for the driver, and Nova's API validators."""

from __future__ import annotations

import dataclasses
import types

import pytest

from nova_vsphere_driver import extra_specs
from nova_vsphere_driver.extra_specs import FlavorSettings, InvalidExtraSpec, parse

# -- parse() -----------------------------------------------------------------------------


def test_no_specs():
    assert parse({}) == FlavorSettings()
    assert parse({"hw:cpu_policy": "dedicated", "resources:VCPU": "0"}) == FlavorSettings()


def test_everything_set():
    settings = parse({
        "vsphere:cpu_limit": "4000", "vsphere:cpu_reservation": "1000",
        "vsphere:cpu_shares_level": "custom", "vsphere:cpu_shares_share": "2000",
        "vsphere:memory_limit": "-1", "vsphere:memory_reservation": "512",
        "vsphere:memory_shares_level": "high",
        "vsphere:host_group": "rack 1 hosts", "vsphere:host_group_rule": "should",
        "vsphere:hw_version": "vmx-19",
    })
    assert settings == FlavorSettings(
        cpu_limit=4000, cpu_reservation=1000, cpu_shares_level="custom",
        cpu_shares_share=2000, memory_limit=-1, memory_reservation=512,
        memory_shares_level="high", memory_shares_share=None,
        host_group="rack 1 hosts", host_group_rule="should", hw_version="vmx-19")
    assert isinstance(settings.cpu_limit, int)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        parse({}).cpu_limit = 5  # type: ignore[misc]


def test_host_group_rule_defaults_to_must():
    assert parse({"vsphere:host_group": "g1"}).host_group_rule == "must"
    assert parse({}).host_group_rule is None


def test_quota_aliases():
    settings = parse({
        "quota:cpu_limit": "3000", "quota:cpu_reservation": "100",
        "quota:cpu_shares_level": "custom", "quota:cpu_shares_share": "50",
        "quota:memory_limit": "0",           # Nova: 0 means no limit
        "quota:memory_shares_level": "low",
        "quota:memory_shares_share": "10",   # Nova: ignored unless level is custom
        "vmware:hw_version": "vmx-17",
    })
    assert settings == FlavorSettings(
        cpu_limit=3000, cpu_reservation=100, cpu_shares_level="custom", cpu_shares_share=50,
        memory_limit=-1, memory_shares_level="low", hw_version="vmx-17")


def test_vsphere_key_wins_over_alias():
    settings = parse({"vsphere:cpu_limit": "2000", "quota:cpu_limit": "1000",
                      "vsphere:hw_version": "vmx-21", "vmware:hw_version": "vmx-13"})
    assert (settings.cpu_limit, settings.hw_version) == (2000, "vmx-21")
    # The shadowed alias is not used at all, not even checked.
    assert parse({"vsphere:cpu_limit": "-1", "quota:cpu_limit": "x"}).cpu_limit == -1


def test_keys_resolve_independently():
    settings = parse({"vsphere:cpu_shares_level": "custom", "quota:cpu_shares_share": "70"})
    assert (settings.cpu_shares_level, settings.cpu_shares_share) == ("custom", 70)


@pytest.mark.parametrize("specs, key, value, allowed", [
    ({"vsphere:cpu_limit": "fast"}, "vsphere:cpu_limit", "fast", "-1 (unlimited) or a positive"),
    ({"vsphere:cpu_limit": "0"}, "vsphere:cpu_limit", "0", "-1 (unlimited) or a positive"),
    ({"vsphere:memory_limit": "-2"}, "vsphere:memory_limit", "-2", "-1 (unlimited)"),
    ({"vsphere:cpu_reservation": "-1"}, "vsphere:cpu_reservation", "-1",
     "an integer from 0 to"),
    ({"vsphere:memory_reservation": "1.5"}, "vsphere:memory_reservation", "1.5",
     "an integer from 0"),
    ({"vsphere:cpu_shares_level": "medium"}, "vsphere:cpu_shares_level", "medium",
     "low, normal, high, custom"),
    ({"vsphere:memory_shares_level": "custom", "vsphere:memory_shares_share": "-3"},
     "vsphere:memory_shares_share", "-3", "an integer from 0 to 2147483647"),
    ({"vsphere:cpu_shares_level": "custom", "vsphere:cpu_shares_share": str(2**31)},
     "vsphere:cpu_shares_share", str(2**31), "to 2147483647"),
    ({"vsphere:host_group_rule": "may", "vsphere:host_group": "g"},
     "vsphere:host_group_rule", "may", "must, should"),
    ({"vsphere:host_group": ""}, "vsphere:host_group", "", "the name of a DRS host group"),
    ({"vsphere:host_group": " g1"}, "vsphere:host_group", " g1", "DRS host group"),
    ({"vsphere:hw_version": "19"}, "vsphere:hw_version", "19", "e.g. vmx-19"),
    ({"vsphere:hw_version": "vmx-1"}, "vsphere:hw_version", "vmx-1", "vmx-"),
    ({"vsphere:cpu_limt": "100"}, "vsphere:cpu_limt", "100",
     "unknown key; known vsphere: keys: cpu_limit, "),
    ({"quota:cpu_limit": "-5"}, "quota:cpu_limit", "-5", "0 or -1 (unlimited)"),
    ({"quota:memory_reservation": "-1"}, "quota:memory_reservation", "-1", "from 0"),
    ({"quota:cpu_shares_level": "max"}, "quota:cpu_shares_level", "max", "low, normal"),
    ({"vmware:hw_version": "vmx_19"}, "vmware:hw_version", "vmx_19", "vmx-"),
])
def test_invalid_value(specs, key, value, allowed):
    with pytest.raises(InvalidExtraSpec) as info:
        parse(specs)
    exc = info.value
    assert isinstance(exc, ValueError)
    assert (exc.key, exc.value) == (key, value)
    assert allowed in str(exc)
    assert f"{key}={value!r}" in str(exc)


@pytest.mark.parametrize("specs, key, allowed", [
    ({"vsphere:cpu_shares_share": "100"}, "vsphere:cpu_shares_share",
     "only allowed with vsphere:cpu_shares_level=custom (it is unset)"),
    ({"vsphere:memory_shares_level": "high", "vsphere:memory_shares_share": "100"},
     "vsphere:memory_shares_share", "(it is vsphere:memory_shares_level=high)"),
    ({"vsphere:cpu_shares_level": "custom"}, "vsphere:cpu_shares_level",
     "custom needs vsphere:cpu_shares_share"),
    ({"quota:memory_shares_level": "custom"}, "quota:memory_shares_level",
     "custom needs vsphere:memory_shares_share"),
    ({"vsphere:cpu_limit": "1000", "vsphere:cpu_reservation": "1500"},
     "vsphere:cpu_reservation", "must not exceed vsphere:cpu_limit=1000"),
    ({"quota:memory_limit": "512", "vsphere:memory_reservation": "1024"},
     "vsphere:memory_reservation", "must not exceed quota:memory_limit=512"),
    ({"vsphere:host_group_rule": "should"}, "vsphere:host_group_rule",
     "only allowed together with vsphere:host_group"),
])
def test_invalid_combination(specs, key, allowed):
    with pytest.raises(InvalidExtraSpec) as info:
        parse(specs)
    assert info.value.key == key
    assert allowed in str(info.value)


def test_unlimited_limit_allows_any_reservation():
    settings = parse({"vsphere:cpu_limit": "-1", "vsphere:cpu_reservation": "99999"})
    assert (settings.cpu_limit, settings.cpu_reservation) == (-1, 99999)
    assert parse({"quota:cpu_limit": "0", "quota:cpu_reservation": "5"}).cpu_reservation == 5


def test_every_setting_has_a_spec():
    fields = {f.name for f in dataclasses.fields(FlavorSettings)}
    assert fields == {spec.name for spec in extra_specs.SPECS}


# -- Nova's validators -------------------------------------------------------------------

@pytest.fixture(scope="module")
def nova_validators():
    """Nova's registry, loaded from the installed entry points (as nova-api does)."""
    return pytest.importorskip("nova.api.validation.extra_specs.validators")


@pytest.fixture(scope="module")
def validate(nova_validators):
    from nova import exception

    if "vsphere:cpu_limit" not in nova_validators.VALIDATORS:
        pytest.fail("the nova.api.extra_spec_validators entry point of nova-vsphere-driver is "
                    "not installed: reinstall the package (pip install -e .)")

    def check(name: str, value: str) -> str | None:
        """None if Nova accepts the extra spec, else its error message."""
        try:
            nova_validators.validate(name, value)
        except exception.ValidationError as exc:
            return str(exc)
        return None

    return check


def test_entry_point_registers_the_vsphere_namespace(validate, nova_validators):
    names = {n for n in nova_validators.VALIDATORS if n.startswith("vsphere:")}
    assert names == {spec.key for spec in extra_specs.SPECS}
    assert "vsphere" in nova_validators.NAMESPACES
    # The aliases stay Nova's own.
    assert nova_validators.VALIDATORS["quota:cpu_limit"].__module__ != extra_specs.__name__


@pytest.mark.parametrize("name, value", [
    ("vsphere:cpu_limit", "-1"), ("vsphere:cpu_limit", "2600"),
    ("vsphere:memory_limit", "1048576"), ("vsphere:cpu_reservation", "0"),
    ("vsphere:memory_reservation", "4096"), ("vsphere:cpu_shares_level", "custom"),
    ("vsphere:memory_shares_level", "low"), ("vsphere:cpu_shares_share", "1000"),
    ("vsphere:memory_shares_share", "0"), ("vsphere:host_group", "gpu hosts"),
    ("vsphere:host_group_rule", "must"), ("vsphere:host_group_rule", "should"),
    ("vsphere:hw_version", "vmx-19"),
])
def test_nova_accepts_good_values(validate, name, value):
    assert validate(name, value) is None


@pytest.mark.parametrize("name, value, message", [
    ("vsphere:cpu_limit", "0", "is not of the format"),
    ("vsphere:cpu_limit", "lots", "is not of the format"),
    ("vsphere:memory_limit", "-2", "is not of the format"),
    ("vsphere:cpu_reservation", "-1", "less than the min value"),
    ("vsphere:memory_reservation", "big", "not a valid integer"),
    ("vsphere:cpu_shares_level", "medium", "is not one of: low, normal, high, custom"),
    ("vsphere:memory_shares_share", "-1", "less than the min value"),
    ("vsphere:cpu_shares_share", str(2**31), "greater than the max value"),
    ("vsphere:host_group", "", "is not of the format"),
    ("vsphere:host_group_rule", "always", "is not one of: must, should"),
    ("vsphere:hw_version", "19", "is not of the format"),
])
def test_nova_rejects_bad_values(validate, name, value, message):
    error = validate(name, value)
    assert error is not None and message in error, error


@pytest.mark.parametrize("name", ["vsphere:cpu_limt", "vsphere:limit", "vsphere:cpu_limit2",
                                  "vsphere:", "vsphere:CPU_LIMIT"])
def test_nova_rejects_unknown_vsphere_keys(validate, name):
    error = validate(name, "1")
    assert error is not None and "does not appear to be a valid extra spec" in error


def test_other_namespaces_are_unaffected(validate):
    assert validate("quota:cpu_limit", "0") is None          # Nova's own validator
    assert validate("mycloud:anything", "x") is None         # unregistered namespace


@pytest.mark.parametrize("name, value", [
    ("vsphere:cpu_limit", "-1"), ("vsphere:cpu_limit", "0"), ("vsphere:cpu_limit", "007"),
    ("vsphere:cpu_limit", "1" + "0" * 18), ("vsphere:memory_limit", " 5"),
    ("vsphere:cpu_reservation", "+7"), ("vsphere:cpu_reservation", str(2**63)),
    ("vsphere:memory_reservation", " 12 "), ("vsphere:memory_reservation", "1_000"),
    ("vsphere:cpu_shares_level", "High"), ("vsphere:host_group", "a"),
    ("vsphere:host_group", "a b"), ("vsphere:host_group", "a\nb"),
    ("vsphere:host_group_rule", "must"), ("vsphere:hw_version", "vmx-100"),
    ("vsphere:hw_version", "vmx-07"),
])
def test_parse_and_nova_agree_on_single_values(validate, name, value):
    """What the API accepts, spawn accepts, and the other way round."""
    companions = {"vsphere:host_group_rule": {"vsphere:host_group": "g"}}.get(name, {})
    try:
        parse({name: value, **companions})
        parsed = True
    except InvalidExtraSpec:
        parsed = False
    assert parsed == (validate(name, value) is None)


def _api_request(version: str):
    from nova.api.openstack import api_version_request

    return types.SimpleNamespace(
        is_legacy_v2=lambda: False,
        api_version_request=api_version_request.APIVersionRequest(version))


def test_flavor_api_validates_from_microversion_2_86(validate):
    """Nova's flavor extra-specs API: strict from 2.86 on, nothing checked before."""
    from nova import exception
    from nova.api.openstack.compute import flavors_extraspecs

    controller = flavors_extraspecs.FlavorExtraSpecsController()
    typo = {"vsphere:cpu_limt": "100"}
    bad_value = {"vsphere:cpu_shares_level": "medium"}
    good = {"vsphere:cpu_limit": "100", "vsphere:host_group": "g1"}
    controller._check_extra_specs_value(_api_request("2.85"), typo)
    controller._check_extra_specs_value(_api_request("2.86"), good)
    for specs in (typo, bad_value):
        with pytest.raises(exception.ValidationError):
            controller._check_extra_specs_value(_api_request("2.86"), specs)


@pytest.mark.parametrize("key", ["vsphere:memory_reservation", "quota:memory_reservation"])
def test_a_memory_reservation_beyond_the_flavors_memory_is_refused(key):
    with pytest.raises(InvalidExtraSpec) as err:
        parse({key: "4097"}, memory_mb=4096)
    assert key in str(err.value) and "'4097'" in str(err.value)
    assert "must not exceed the flavor's memory, 4096 MB" in str(err.value)
    assert parse({key: "4096"}, memory_mb=4096).memory_reservation == 4096


def test_nova_cannot_know_the_flavor_so_only_parse_checks_it(validate):
    # Nova's API validates one key at a time, without the flavor: the verdict
    # on a reservation beyond the flavor's memory comes from spawn and resize.
    assert validate("vsphere:memory_reservation", "1048576") is None
    assert parse({"vsphere:memory_reservation": "1048576"}).memory_reservation == 1048576
