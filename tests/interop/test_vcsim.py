"""vcsim, built here from Debian's govmomi, serves real vim25 to Python clients."""

from __future__ import annotations

import ssl

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from tests.interop.vcsim import Vcsim, VcsimInventory


def _connect(server: Vcsim):
    context = ssl.create_default_context(cafile=server.ca_file)
    return SmartConnect(host="127.0.0.1", port=server.port, user=server.username,
                        pwd=server.password, sslContext=context)


def test_vcsim_serves_its_model_over_verified_https(vcsim_binary):
    inventory = VcsimInventory(clusters=2, hosts_per_cluster=2, standalone_hosts=0, vms=3)
    with Vcsim(vcsim_binary, inventory) as server:
        si = _connect(server)
        try:
            content = si.RetrieveContent()
            assert content.about.apiType == "VirtualCenter"
            view = content.viewManager.CreateContainerView(
                content.rootFolder, [vim.ClusterComputeResource], True)
            clusters = {c.name: sorted(h.name for h in c.host) for c in view.view}
            assert clusters == {"DC0_C0": ["DC0_C0_H0", "DC0_C0_H1"],
                                "DC0_C1": ["DC0_C1_H0", "DC0_C1_H1"]}
            view = content.viewManager.CreateContainerView(
                content.rootFolder, [vim.VirtualMachine], True)
            assert len(view.view) == 2 * 3 == server.banner["vms"]
            assert {vm.runtime.powerState for vm in view.view} == {"poweredOn"}
        finally:
            Disconnect(si)


def test_vcsim_refuses_other_credentials(vcsim):
    context = ssl.create_default_context(cafile=vcsim.ca_file)
    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(host="127.0.0.1", port=vcsim.port, user=vcsim.username, pwd="wrong",
                     sslContext=context)
