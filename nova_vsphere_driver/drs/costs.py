"""What migrations cost: how the planner weighs a move, and how long a pass takes.

Two questions, two models:

* **Which moves to prefer** (:class:`MoveCost`).  A vMotion costs something
  whatever the VM's size -- a vCenter task and one of the few concurrent
  migration slots of both hosts, the pre-copy set-up, the stun at
  switch-over, the chance that it fails -- and then the memory it copies.
  The planner weighs a move as ``per_move_mb + memory_mb`` and prefers the
  most imbalance reduction per unit of that weight.  The default weighs one
  vMotion like 256 GiB copied (about four minutes of a 10 GbE link): the
  workload disturbed counts more than the traffic on the vMotion network.
  So the planner takes the move with the most benefit unless one that
  copies less memory does nearly as well: a 4 GiB VM beats a 64 GiB VM
  from the same host when it brings at least 81 % of the 64 GiB VM's
  benefit, since (256 + 4) / (256 + 64) = 0.81.  Large busy VMs from the
  hottest hosts go first; small VMs move only where a big one does not fit.

* **How long a pass takes** (:class:`VMotionTiming`).  Moves run in waves
  (see :mod:`.waves`); a wave ends when its slowest host is done.  Every
  move's memory crosses the vMotion link of its source and of its target,
  and the moves of a wave that share a host share its link, so::

      wave_s = setup_s + max over hosts h of (sum of memory_mb of the
               wave's moves touching h) * precopy_factor / link_mib_s
      pass_s = sum of wave_s over the waves

  Constants (defaults): a 10 Gb/s vMotion link used at 90 % (vMotion
  fills a 10 GbE link with a single stream, about 1,073 MiB/s of payload);
  pre-copy sends memory dirtied during the copy again, 1.2 times the
  configured memory on average; 8 s of set-up per wave (task admission,
  compatibility checks, creating the destination VM, switch-over and
  clean-up; moves of one wave overlap theirs).  vSphere runs at most 8
  vMotions per host at once on 10 GbE networks (4 on 1 GbE), which is
  the default per-host limit the waves are built under.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence

from nova_vsphere_driver.drs.moves import Move

GIB = 1024
#: vSphere's concurrent vMotion limit per host on 10 GbE networks.
DEFAULT_MAX_CONCURRENT_PER_HOST = 8


@dataclasses.dataclass(frozen=True)
class MoveCost:
    """The planner's weight of one migration: ``per_move_mb + memory_mb``."""

    per_move_mb: int = 256 * GIB

    def __post_init__(self) -> None:
        if self.per_move_mb < 0:
            raise ValueError("per_move_mb must be >= 0")

    def weight(self, memory_mb: int) -> int:
        """The weight of migrating a VM with ``memory_mb`` of configured memory."""
        return self.per_move_mb + memory_mb


@dataclasses.dataclass(frozen=True)
class VMotionTiming:
    """The vMotion network and concurrency a pass runs with (see the module docstring)."""

    link_gbit_s: float = 10.0
    link_efficiency: float = 0.9
    precopy_factor: float = 1.2
    setup_s: float = 8.0
    max_concurrent_per_host: int = DEFAULT_MAX_CONCURRENT_PER_HOST

    def __post_init__(self) -> None:
        if self.max_concurrent_per_host < 1:
            raise ValueError("max_concurrent_per_host must be >= 1")
        if self.link_gbit_s <= 0 or not 0 < self.link_efficiency <= 1:
            raise ValueError("the link speed and efficiency must be positive "
                             "(efficiency at most 1)")
        if self.precopy_factor < 1 or self.setup_s < 0:
            raise ValueError("precopy_factor must be >= 1 and setup_s >= 0")

    @property
    def link_mib_s(self) -> float:
        """Memory one host's vMotion link copies per second, in MiB."""
        return self.link_gbit_s * 1e9 / 8 / 2**20 * self.link_efficiency

    def copy_seconds(self, memory_mb: float) -> float:
        """Time to copy ``memory_mb`` over one link, pre-copy rounds included."""
        return memory_mb * self.precopy_factor / self.link_mib_s

    def wave_seconds(self, wave: Iterable[Move]) -> float:
        """Expected duration of one wave (0 for an empty one)."""
        through: Counter[str] = Counter()
        for move in wave:
            through[move.source] += move.memory_mb
            through[move.target] += move.memory_mb
        if not through:
            return 0.0
        return self.setup_s + self.copy_seconds(max(through.values()))

    def pass_seconds(self, waves: Sequence[Iterable[Move]]) -> float:
        """Expected duration of running ``waves`` one after another."""
        return sum(self.wave_seconds(w) for w in waves)


DEFAULT_MOVE_COST = MoveCost()
DEFAULT_TIMING = VMotionTiming()

__all__ = ["DEFAULT_MAX_CONCURRENT_PER_HOST", "DEFAULT_MOVE_COST", "DEFAULT_TIMING",
           "MoveCost", "VMotionTiming"]
