"""The folder instances' VMs go to in each datacenter ([vsphere] vm_folder)."""

from __future__ import annotations

import threading

import nova.conf
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.cluster_state import ClusterRef
from nova_vsphere_driver.vsphere.session import VSphereSession

CONF = nova.conf.CONF


class VmFolders:
    """Each datacenter's instance folder, found or created once."""

    def __init__(self, session: VSphereSession) -> None:
        self._session = session
        self._folders: dict[str, object] = {}
        self._lock = threading.Lock()

    def folder(self, ref: ClusterRef):
        """The instances' folder in the cluster's datacenter, created when missing."""
        session = self._session
        with self._lock:
            folder = self._folders.get(ref.datacenter)
            if folder is not None:
                return folder
            parent = vim_util.get_moref(ref.vm_folder, "Folder")
            name = CONF.vsphere.vm_folder
            if not name:
                self._folders[ref.datacenter] = parent
                return parent
            found = session.invoke("FindChild", session.content.searchIndex,
                                   entity=parent, name=name)
            if found is None:
                try:
                    found = session.invoke("CreateFolder", parent, name=name)
                except vexc.DuplicateName:
                    found = session.invoke("FindChild", session.content.searchIndex,
                                           entity=parent, name=name)
            self._folders[ref.datacenter] = found
            return found
