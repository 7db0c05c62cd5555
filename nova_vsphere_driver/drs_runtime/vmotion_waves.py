"""Carry out DRS moves as vMotions, wave by wave, reporting progress as they end.

A wave's vMotions run at once (one thread each) and the next wave starts
when all of them have ended; the waves come from
:func:`nova_vsphere_driver.drs.schedule_waves`, so every host stays within
capacity and rules whatever the order in which a wave's moves complete, and
the state between two waves is one the sequential plan passes through. That
is why a run may stop between waves (``stop``): every VM is then where the
plan left it valid. Waiting for the moves happens in the calling thread, in
short sleeps a signal handler can interrupt, so a command-line tool can set
``stop`` from its Ctrl-C handler.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence

from oslo_log import log as logging

from nova_vsphere_driver.drs import Move, VMotionTiming
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


@dataclasses.dataclass(frozen=True)
class WaveProgress:
    """Where a run of waves stands, after ``event`` (one per move end and per wave)."""

    #: "wave started", "move done", "move failed", "wave done" or "stopped".
    event: str
    #: The wave running (or just finished), 1-based, of ``waves``.
    wave: int
    waves: int
    done: int
    failed: int
    #: Moves not finished yet, the running ones included.
    remaining: int
    memory_mb_moved: int
    elapsed_seconds: float
    #: Expected seconds until the last wave ends (None: nothing left to run).
    eta_seconds: float | None
    move: Move | None = None
    error: Exception | None = None


class _Clock:
    """Elapsed time and the ETA of a run: the timing model of the waves not run
    yet, scaled by how fast the finished waves went against the same model."""

    def __init__(self, waves: Sequence[Sequence[Move]], timing: VMotionTiming,
                 clock: Callable[[], float]) -> None:
        self._clock = clock
        self._expected = [timing.wave_seconds(w) for w in waves]
        self.started = clock()
        self._wave_started = self.started
        self._finished_expected = 0.0
        self._finished_actual = 0.0
        self.wave = 0

    def elapsed(self) -> float:
        return self._clock() - self.started

    def start_wave(self, index: int) -> None:
        self.wave = index
        self._wave_started = self._clock()

    def end_wave(self) -> None:
        self._finished_expected += self._expected[self.wave]
        self._finished_actual += self._clock() - self._wave_started

    def eta(self, wave_running: bool) -> float | None:
        """Seconds until the last wave ends; None when no wave is left to run."""
        speed = (self._finished_actual / self._finished_expected
                 if self._finished_expected > 0 else 1.0)
        later = sum(self._expected[self.wave + 1:]) * speed
        if wave_running:
            in_wave = self._clock() - self._wave_started
            return later + max(0.0, self._expected[self.wave] * speed - in_wave)
        return later if self.wave + 1 < len(self._expected) else None


def run_waves(session: VSphereSession, waves: Sequence[Sequence[Move]],
              pool_moref: str | None = None, stop_on_error: bool = True, *,
              timing: VMotionTiming | None = None,
              progress: Callable[[WaveProgress], None] | None = None,
              stop: threading.Event | None = None,
              clock: Callable[[], float] = time.monotonic) -> list[MoveOutcome]:
    """Run each wave's vMotions concurrently, one wave after the other.

    A failed move ends the run after its wave when ``stop_on_error`` (later
    waves may depend on it). ``stop`` set ends it after the running wave.
    ``progress`` hears of every wave start, move end and wave end (and of
    the stop), in the calling thread; its ETA follows ``timing``. Moves of
    waves not run have no outcome.
    """
    timing = timing or VMotionTiming()
    total = sum(len(w) for w in waves)
    times = _Clock(waves, timing, clock)
    outcomes: list[MoveOutcome] = []
    counts = {"done": 0, "failed": 0, "memory_mb": 0}

    def tell(event: str, outcome: MoveOutcome | None = None, running: bool = True) -> None:
        if progress is None:
            return
        finished = counts["done"] + counts["failed"]
        eta = None if event == "stopped" else times.eta(running)
        progress(WaveProgress(
            event, times.wave + 1, len(waves), counts["done"], counts["failed"],
            total - finished, counts["memory_mb"], times.elapsed(), eta,
            outcome.move if outcome else None, outcome.error if outcome else None))

    for index, wave in enumerate(waves):
        if stop is not None and stop.is_set():
            LOG.info("Stopping after wave %d of %d as asked: %d move(s) not run", index,
                     len(waves), total - len(outcomes))
            tell("stopped", running=False)
            break
        times.start_wave(index)
        results = [MoveOutcome(m) for m in wave]
        ended: list[MoveOutcome] = []
        lock = threading.Lock()
        all_ended = threading.Event()

        def run(outcome: MoveOutcome, ended=ended, lock=lock, all_ended=all_ended,
                size=len(results)) -> None:
            move = outcome.move
            try:
                LOG.info("vMotion %s: %s -> %s (%s)", move.vm_name or move.vm, move.source,
                         move.target, move.reason)
                vmotion(session, move.vm, move.target, pool_moref)
            except Exception as exc:  # reported to the caller, per move
                LOG.warning("vMotion of %s to %s failed: %s", move.vm_name or move.vm,
                            move.target, exc)
                outcome.error = exc
            with lock:
                ended.append(outcome)
                if len(ended) == size:
                    all_ended.set()

        tell("wave started")
        threads = [threading.Thread(target=run, args=(r,), daemon=True,
                                    name=f"vmotion-{r.move.vm_name or r.move.vm}")
                   for r in results]
        for thread in threads:
            thread.start()
        reported = 0
        while reported < len(results):
            # Short waits: a signal handler (Ctrl-C) runs in this thread meanwhile.
            all_ended.wait(0.2)
            with lock:
                fresh = ended[reported:]
            for outcome in fresh:
                counts["done" if outcome.ok else "failed"] += 1
                if outcome.ok:
                    counts["memory_mb"] += outcome.move.memory_mb
                tell("move done" if outcome.ok else "move failed", outcome)
            reported += len(fresh)
        for thread in threads:
            thread.join()
        times.end_wave()
        outcomes.extend(results)
        tell("wave done", running=False)
        if stop_on_error and any(not r.ok for r in results):
            break
    return outcomes
