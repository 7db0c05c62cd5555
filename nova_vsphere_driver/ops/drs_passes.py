"""DRS rounds over the managed clusters: maintenance evacuation, then balancing when due.

The driver's background loop runs one round per cluster every ``[vsphere_drs]
poll_interval``; ``nova-vsphere-demo`` and tests ask for a balancing pass now.
"""

from __future__ import annotations

import threading

import nova.conf

from nova_vsphere_driver.drs_runtime.controller import PassReport, PassSchedule
from nova_vsphere_driver.services import Services

CONF = nova.conf.CONF


class DrsPasses:
    """DRS rounds of one driver's clusters (built once; thread-safe)."""

    def __init__(self, services: Services, schedule: PassSchedule,
                 stopping: threading.Event | None = None) -> None:
        self._services = services
        self._schedule = schedule
        #: Set when nova-compute stops: a background pass ends after its running
        #: wave of vMotions instead of holding the service up for the rest.
        self._stopping = stopping

    def run_pass(self, nodename: str, force_balance: bool = False) -> list[PassReport]:
        """One DRS round for a cluster: maintenance evacuation, then balancing if due."""
        services = self._services
        reports = []
        state = services.states.read(nodename)
        limits = services.limits()
        evacuation = services.drs.evacuate(state, limits, stop=self._stopping)
        if evacuation is not None:
            reports.append(evacuation)
            state = services.states.read(nodename)
        if force_balance or self._schedule.due(state.ref.moref):
            reports.append(services.drs.balance(state, limits,
                                                apply=not CONF.vsphere_drs.dry_run,
                                                stop=self._stopping))
        return reports

    def balance(self, nodename: str, dry_run: bool = False) -> PassReport:
        """One balancing pass over the cluster of ``nodename``, now."""
        services = self._services
        state = services.states.read(nodename)
        return services.drs.balance(state, services.limits(), apply=not dry_run)
