"""Console tickets (VirtualMachine.AcquireTicket) as ESXi hands them out.

A ticket is a one-time credential for a console connection made directly to
the ESXi host running the VM, not to vCenter: ``mks`` on the host's port 902,
``webmks`` (the HTML5 console, MKS over a WebSocket) on port 443 at
``wss://<host>:443/ticket/<ticket>``. Clients check the host's certificate
against ``sslThumbprint`` (SHA-1, colon-separated upper-case hex).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

from pyVmomi import vim

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.host import HostSystem
    from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine

#: ESXi's port per ticket type (authd on 902; the HTTPS reverse proxy on 443).
TICKET_PORTS = {"mks": 902, "webmks": 443}


def host_thumbprint(host: HostSystem) -> str:
    """A stable SHA-1 thumbprint per simulated host (the host has no certificate of its own)."""
    digest = hashlib.sha1(f"esxi-certificate:{host.uuid}".encode()).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def ticket(vm: VirtualMachine, ticket_type: str) -> vim.VirtualMachine.Ticket:
    host = vm.host
    port = TICKET_PORTS.get(ticket_type, 443)
    secret = uuid.uuid4().hex
    url = f"wss://{host.name}:{port}/ticket/{secret}" if ticket_type == "webmks" else None
    return vim.VirtualMachine.Ticket(ticket=secret, cfgFile=vm.config.files.vmPathName,
                                     host=host.name, port=port,
                                     sslThumbprint=host_thumbprint(host), url=url)
