"""[vsphere] cluster_names entries: a cluster's name, or its datacenter path and name."""

from __future__ import annotations

import pytest

from nova_vsphere_driver.vsphere.cluster_paths import ClusterNameError, matches, select
from nova_vsphere_driver.vsphere.cluster_state import ClusterRef


def _ref(moref: str, name: str, dc_path: str) -> ClusterRef:
    return ClusterRef(moref=moref, name=name, datacenter=f"dc-{dc_path}",
                      datacenter_name=dc_path.rsplit("/", 1)[-1], resource_pool="rp",
                      vm_folder="vmf", datacenter_path=dc_path)


FOUND = [_ref("domain-c1", "cluster-a", "emea/dc1"), _ref("domain-c2", "cluster-a", "apac/dc1"),
         _ref("domain-c3", "cluster-a", "dc2"), _ref("domain-c4", "solo", "emea/dc1"),
         _ref("domain-c5", "R&D%2fprod", "dc2")]


@pytest.mark.parametrize("entry, moref", [
    ("solo", "domain-c4"), ("dc1/solo", "domain-c4"), ("emea/dc1/solo", "domain-c4"),
    ("/emea/dc1/solo", "domain-c4"), ("emea/dc1/cluster-a", "domain-c1"),
    ("apac/dc1/cluster-a", "domain-c2"), ("dc2/cluster-a", "domain-c3"),
    ("/dc2/cluster-a", "domain-c3"), ("R&D%2fprod", "domain-c5"),
])
def test_an_entry_names_one_cluster(entry, moref):
    assert [r.moref for r in select(FOUND, [entry])] == [moref]


@pytest.mark.parametrize("entry", ["/dc1/solo", "dc1", "west/dc1/solo", "olo", "dc1/sol",
                                   "emea//solo", "/solo", "R&D/prod", "emea/dc1/solo/"])
def test_an_entry_that_is_no_path_end_matches_nothing(entry):
    assert not any(matches(ref, entry) for ref in FOUND)


def test_a_name_in_several_datacenters_is_refused_naming_them():
    with pytest.raises(ClusterNameError) as err:
        select(FOUND, ["cluster-a"])
    message = str(err.value)
    assert "'cluster-a' is in 3 datacenters" in message
    assert "apac/dc1, dc2, emea/dc1" in message
    assert "'apac/dc1/cluster-a'" in message  # how to write one of them
    with pytest.raises(ClusterNameError, match="in 2 datacenters: apac/dc1, emea/dc1"):
        select(FOUND, ["dc1/cluster-a"])


def test_unknown_names_are_listed_with_every_cluster_there():
    with pytest.raises(ClusterNameError) as err:
        select(FOUND, ["solo", "nope", "dc9/solo"])
    assert "no cluster 'nope', 'dc9/solo'" in str(err.value)
    assert "emea/dc1/cluster-a" in str(err.value) and "dc2/R&D%2fprod" in str(err.value)


def test_one_cluster_named_twice_is_refused():
    with pytest.raises(ClusterNameError, match="'solo' and 'emea/dc1/solo' are the same"):
        select(FOUND, ["solo", "emea/dc1/solo"])


def test_order_is_kept():
    chosen = select(FOUND, ["dc2/cluster-a", "solo", "apac/dc1/cluster-a"])
    assert [r.moref for r in chosen] == ["domain-c3", "domain-c4", "domain-c2"]


def test_a_datacenter_path_defaults_to_its_name():
    ref = ClusterRef(moref="domain-c9", name="c", datacenter="datacenter-1",
                     datacenter_name="dc1", resource_pool="rp", vm_folder="vmf")
    assert ref.datacenter_path == "dc1" and ref.path == "dc1/c"
