#!/usr/bin/env python3
"""What exact escaping costs the driver's vCenter client (vsphere/soap_text.py).

The session's suds client escapes every request completely before suds
renders it. Measured here against an in-process simulator on loopback, on
one session, with the plugin and without it (suds' own, lossy escaping) in
alternating rounds:

* building one large request -- a ReconfigVM_Task spec with ``--devices``
  disks and NICs, rendered but not sent (suds' ``nosend``): the plugin's
  whole cost, with nothing to hide it;
* a cluster-state read (one RetrievePropertiesEx through a ContainerView):
  the round trip the driver makes most.

Prints medians and the ratio with/without (the machine is shared and noisy:
compare ratios across runs, not milliseconds).

Usage: python tools/bench/soap_text.py [--devices 64] [--repeat 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def _median_ms(fn, repeat: int) -> float:
    fn()  # warm up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


def _big_spec(session, devices: int):
    spec = session.factory("VirtualMachineConfigSpec")
    spec.annotation = "name:R&D <bench> \"1\"\nuuid:x\nproject:p\nflavor:f"
    changes = []
    for i in range(devices):
        disk = session.factory("VirtualDisk")
        disk.key, disk.controllerKey, disk.unitNumber = -1000 - i, 1000, i % 15
        disk.capacityInKB = 1024 * 1024
        backing = session.factory("VirtualDiskFlatVer2BackingInfo")
        backing.fileName = f"[shared-a] bench/disk-{i}.vmdk"
        backing.diskMode = "persistent"
        disk.backing = backing
        change = session.factory("VirtualDeviceConfigSpec")
        change.operation, change.device = "add", disk
        changes.append(change)
    spec.deviceChange = changes
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    # Native threads: oslo.vmware fixes oslo.service's backend when imported.
    from oslo_service import backend

    if backend.get_backend_type() is None:
        backend.init_backend(backend.BackendType.THREADING)
    from nova_vsphere_driver.simulator import Simulator, SimulatorServer, wsdl
    from nova_vsphere_driver.vsphere import soap_text
    from nova_vsphere_driver.vsphere.cluster_state import ClusterStateReader
    from nova_vsphere_driver.vsphere.session import VSphereSession

    wsdl_dir = tempfile.mkdtemp(prefix="bench-wsdl-")
    wsdl_file = "file://" + wsdl.write_documents(wsdl_dir)
    server = SimulatorServer(Simulator(password="bench-Pa55"))
    server.start()
    try:
        session = VSphereSession("127.0.0.1", server.port, server.simulator.username,
                                 "bench-Pa55", scheme="http", wsdl_location=wsdl_file)
        client = session.vim.client
        exact = list(client.options.plugins)
        lossy = [p for p in exact if not isinstance(p, soap_text.ExactText)]
        reader = ClusterStateReader(session)
        [cluster] = [c for c in reader.find_clusters() if c.name == "cluster-a"]
        spec = _big_spec(session, args.devices)
        vm_ref = session.content.rootFolder  # any reference: the request is not sent

        def build() -> None:
            client.set_options(nosend=True)
            try:
                client.service.ReconfigVM_Task(vm_ref, spec=spec)
            finally:
                client.set_options(nosend=False)

        def read() -> None:
            reader.cluster_state(cluster)

        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for label, plugins in (("suds", lossy), ("exact", exact)):
                client.set_options(plugins=plugins)
                results.setdefault(("build", label), []).append(_median_ms(build, args.repeat))
                results.setdefault(("read", label), []).append(_median_ms(read, args.repeat))
        client.set_options(plugins=exact)
        session.logout()
    finally:
        server.stop()

    print(f"request with {args.devices} devices, built and rendered (not sent), median of "
          f"{args.repeat} x {args.rounds} rounds:")
    for what, title in (("build", "build"), ("read", "cluster-state read round trip")):
        base = statistics.median(results[(what, "suds")])
        ours = statistics.median(results[(what, "exact")])
        print(f"  {title:32s} suds' escaping {base:8.3f} ms   exact {ours:8.3f} ms   "
              f"ratio {ours / base:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
