"""Which virtual hardware versions each host of a cluster can create VMs of.

vCenter answers it per cluster in one call: the cluster's EnvironmentBrowser
lists, for every version (``vmx-19``, ...), whether new VMs may have it and
on which hosts (QueryConfigOptionDescriptor). Hosts of one cluster differ
during a rolling ESXi upgrade.
"""

from __future__ import annotations

from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.cluster_state import ClusterRef
from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.suds_values import items


def creatable_versions(session: VSphereSession,
                       cluster: ClusterRef) -> dict[str, frozenset[str]] | None:
    """Hardware version -> morefs of the cluster's hosts that can create VMs of it.

    None when vCenter offers no environment browser for the cluster (the
    versions are then not known; vCenter still refuses a version a host
    cannot run when the VM is created).
    """
    browser = session.call("get_object_property", cluster.ref(), "environmentBrowser")
    if browser is None:
        return None
    found = session.invoke("QueryConfigOptionDescriptor", browser)
    descriptors = found if isinstance(found, list) else [found] if found is not None else []
    versions: dict[str, frozenset[str]] = {}
    for descriptor in descriptors:
        if getattr(descriptor, "createSupported", False):
            versions[str(descriptor.key)] = frozenset(
                vim_util.get_moref_value(host) for host in items(getattr(descriptor, "host",
                                                                         None)))
    return versions
