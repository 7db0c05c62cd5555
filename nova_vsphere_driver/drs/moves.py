"""One planned migration and the kinds of reasons for it."""

from __future__ import annotations

import dataclasses
import enum


class MoveKind(str, enum.Enum):
    """Why a move exists; also its priority within a plan (lower first)."""

    MAINTENANCE = "maintenance"  # its host is entering maintenance
    MUST_RULE = "must-rule"  # fixes a violated mandatory rule
    CAPACITY = "capacity"  # its host is over capacity
    SHOULD_RULE = "should-rule"  # fixes a violated preferential rule
    BALANCE = "balance"  # lowers the cluster imbalance
    ROOM = "room"  # frees a host for a new VM that fits nowhere as is


@dataclasses.dataclass(frozen=True)
class Move:
    """Migrate ``vm`` from ``source`` to ``target`` (host ids).

    ``imbalance_before``/``imbalance_after`` are the cluster imbalance just
    before and after this move, in plan order; ``memory_mb`` is the VM's
    configured memory, what vMotion copies (the move's cost).
    """

    vm: str
    source: str
    target: str
    reason: str
    imbalance_before: float
    imbalance_after: float
    memory_mb: int
    kind: MoveKind = MoveKind.BALANCE
    vm_name: str = ""

    def __str__(self) -> str:
        return (f"{self.vm_name or self.vm}: {self.source} -> {self.target} "
                f"[{self.kind.value}] {self.reason}")
