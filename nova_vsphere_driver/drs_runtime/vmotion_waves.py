"""Carry out DRS moves as vMotions, wave by wave."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from oslo_log import log as logging

from nova_vsphere_driver.drs import Move
from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.vmotion import vmotion

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class MoveOutcome:
    move: Move
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_waves(session: VSphereSession, waves: Sequence[Sequence[Move]],
              pool_moref: str | None = None, stop_on_error: bool = True) -> list[MoveOutcome]:
    """Run each wave's vMotions concurrently, one wave after the other.

    The waves come from :func:`nova_vsphere_driver.drs.schedule_waves`: every
    host stays within capacity whatever the order of completion inside a
    wave. A failed move ends the plan after its wave when ``stop_on_error``
    (later waves may depend on it); otherwise the moves independent of it
    still run.
    """
    outcomes: list[MoveOutcome] = []
    failed_vms: set[str] = set()
    for wave in waves:
        results = [MoveOutcome(m) for m in wave]

        def run(outcome: MoveOutcome) -> None:
            move = outcome.move
            try:
                LOG.info("vMotion %s: %s -> %s (%s)", move.vm_name or move.vm, move.source,
                         move.target, move.reason)
                vmotion(session, move.vm, move.target, pool_moref)
            except Exception as exc:  # reported to the caller, per move
                LOG.warning("vMotion of %s to %s failed: %s", move.vm_name or move.vm,
                            move.target, exc)
                outcome.error = exc

        threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in results[1:]]
        for thread in threads:
            thread.start()
        if results:
            run(results[0])
        for thread in threads:
            thread.join()
        outcomes.extend(results)
        failed_vms |= {r.move.vm for r in results if not r.ok}
        if failed_vms and stop_on_error:
            break
    return outcomes
