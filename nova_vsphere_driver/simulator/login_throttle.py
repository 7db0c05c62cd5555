"""Progressive delays for failed logins, per client address."""

from __future__ import annotations

import threading
import time


class LoginThrottle:
    """Slows down a client address that keeps failing to log in.

    After the n-th consecutive failure from an address, its next attempt
    waits ``first_delay * 2 ** (n - 1)`` seconds (at most ``max_delay``).
    Attempts from one address are spaced that far apart even when sent in
    parallel: each one reserves the next free slot. The wait is a sleep in
    the caller's own thread, outside any lock, so other clients (and the
    same client's other calls) go on. A success, or ``forget_after``
    seconds without a failure, clears the address.
    """

    def __init__(self, first_delay: float = 0.25, max_delay: float = 8.0,
                 forget_after: float = 600.0) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self._lock = threading.Lock()
        # address -> [consecutive failures, time of the next free slot, last failure]
        self._state: dict[str, list[float]] = {}

    def _delay(self, failures: float) -> float:
        return min(self.first_delay * 2 ** (failures - 1), self.max_delay) if failures else 0.0

    def wait_turn(self, address: str) -> float:
        """Sleep until this address may try again; returns the seconds waited."""
        now = time.monotonic()
        with self._lock:
            entry = self._state.get(address)
            if entry is None:
                return 0.0
            failures, next_slot, last_failure = entry
            if now - last_failure > self.forget_after:
                del self._state[address]
                return 0.0
            slot = max(now, next_slot)
            entry[1] = slot + self._delay(failures)
        wait = slot - now
        if wait > 0:
            time.sleep(wait)
        return wait

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            entry = self._state.setdefault(address, [0, now, now])
            entry[0] += 1
            entry[2] = now
            entry[1] = max(entry[1], now + self._delay(entry[0]))

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._state.pop(address, None)

    def delay_for(self, address: str) -> float:
        """The delay the next attempt from ``address`` would get, without waiting."""
        with self._lock:
            entry = self._state.get(address)
            return max(0.0, entry[1] - time.monotonic()) if entry else 0.0
