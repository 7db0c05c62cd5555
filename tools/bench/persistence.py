#!/usr/bin/env python3
"""Simulator state file benchmark: saving and loading a big inventory (--state).

Prints absolute figures and ratios to a baseline measured in the same run
(the machine is shared and noisy: compare ratios across runs, not seconds).
The baseline is building the same simulator from its inventory mapping,
which is what a start without a state file costs:

* load: a new simulator from the state file, vs building it;
* save: one full save (JSON document and its atomic rename), and the part of
  it that holds the simulator's lock (calls wait meanwhile), vs building;
* a save after one change; a save with a 64 MiB datastore file already
  saved (its content is neither hashed nor written again).

Usage: python tools/bench/persistence.py [--hosts 64] [--vms 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from simulator import build_inventory  # noqa: E402

from nova_vsphere_driver.simulator import Simulator  # noqa: E402
from nova_vsphere_driver.simulator.persistence import StateFile  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median seconds of ``repeat`` runs of ``fn``, and its last result."""
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--vms", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    inventory = build_inventory(args.hosts, args.vms)
    build_s, sim = timed(lambda: Simulator(inventory), args.repeat)
    directory = tempfile.mkdtemp(prefix="vsphere-sim-bench-")
    state = StateFile(os.path.join(directory, "state.json"))
    save_s, stats = timed(lambda: state.save(sim), args.repeat)
    size_mb = stats.state_bytes / 1024 / 1024

    def load():
        fresh = Simulator({"datacenters": []})
        state.load(fresh)
        return fresh

    load_s, loaded = timed(load, args.repeat)
    assert len(loaded.vms()) == args.vms, (len(loaded.vms()), args.vms)

    ds = sim.datastores["shared"]
    ds.store_file("images/big.img", os.urandom(64 * 1024 * 1024))
    first_blob = state.save(sim)
    again_s, again = timed(lambda: state.save(sim), args.repeat)

    print(f"Simulator state file, {args.hosts} hosts, {args.vms} VMs "
          f"(median of {args.repeat}; state {size_mb:.1f} MiB)")
    print(f"  build from the inventory (baseline) {build_s:8.2f} s")
    print(f"  load from the state file            {load_s:8.2f} s   x{load_s / build_s:.2f} "
          "of build")
    print(f"  save (total)                        {save_s:8.2f} s   x{save_s / build_s:.2f} "
          "of build")
    print(f"  save (holding the simulator's lock) {stats.seconds_locked:8.2f} s   "
          f"x{stats.seconds_locked / build_s:.2f} of build")
    print(f"  save with a 64 MiB file, first      {first_blob.seconds_total:8.2f} s   "
          f"({first_blob.blobs_written} blob written)")
    print(f"  save with that file already saved   {again_s:8.2f} s   "
          f"x{again_s / save_s:.2f} of a save without it ({again.blobs_written} blobs written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
