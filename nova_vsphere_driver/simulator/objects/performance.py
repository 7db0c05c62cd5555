"""PerformanceManager: counters and samples taken from the simulator's resource accounting.

The counters are vCenter's names and units (``cpu.usagemhz.average`` in
MHz, ``cpu.usage.average`` in hundredths of a percent, ``mem.consumed.average``
in KB, ...). Their values come from the same accounting that drives
``summary.quickStats``: a host's CPU and memory usage is what its powered-on
VMs use, a VM's what it demands, so a sample and a quickStats read taken
together agree. VMs and hosts have realtime samples (20 s); clusters and
datastores have historical intervals only, as on vCenter.

Limitations: the simulator keeps no history of its accounting. Every
sample of a query reports the accounting at the time of the query; samples
start when the entity began to run (a VM's or host's boot) and a powered-off
VM or a disconnected host has none. Disk and network rates are 0 (no I/O is
modelled). Intervals and counter levels cannot be changed.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

PM = vim.PerformanceManager
REALTIME = 20
#: vCenter keeps an hour of realtime samples.
REALTIME_SAMPLES = 180
#: (key, sampling period, name, length kept): vCenter's default intervals.
INTERVALS = ((1, 300, "Past day", 86400), (2, 1800, "Past week", 604800),
             (3, 7200, "Past month", 2592000), (4, 86400, "Past year", 31536000))


@dataclasses.dataclass(frozen=True)
class Counter:
    key: int
    group: str
    name: str
    rollup: str
    unit: str
    stats: str  # absolute | delta | rate
    level: int
    label: str
    #: Which entities have it: "vm", "host", "cluster", "datastore".
    kinds: frozenset[str]

    @property
    def full_name(self) -> str:
        return f"{self.group}.{self.name}.{self.rollup}"

    def info(self) -> vim.PerformanceManager.CounterInfo:
        def element(key: str, label: str) -> vim.ElementDescription:
            return vim.ElementDescription(key=key, label=label, summary=label)

        return PM.CounterInfo(
            key=self.key, nameInfo=element(self.name, self.label),
            groupInfo=element(self.group, self.group.upper() if len(self.group) <= 3
                              else self.group.capitalize()),
            unitInfo=element(self.unit, _UNIT_LABELS[self.unit]),
            rollupType=self.rollup, statsType=self.stats, level=self.level,
            perDeviceLevel=max(self.level, 3), associatedCounterId=[])


_UNIT_LABELS = {"percent": "%", "megaHertz": "MHz", "kiloBytes": "KB", "second": "s",
                "millisecond": "ms", "kiloBytesPerSecond": "KBps"}
_RUNNING = frozenset({"vm", "host"})
_ALL = frozenset({"vm", "host", "cluster"})
COUNTERS = (
    Counter(2, "cpu", "usage", "average", "percent", "rate", 1, "Usage", _ALL),
    Counter(6, "cpu", "usagemhz", "average", "megaHertz", "rate", 1, "Usage in MHz", _ALL),
    Counter(12, "cpu", "ready", "summation", "millisecond", "delta", 1, "Ready", _RUNNING),
    Counter(24, "mem", "usage", "average", "percent", "absolute", 1, "Usage", _ALL),
    Counter(29, "mem", "granted", "average", "kiloBytes", "absolute", 2, "Granted", _RUNNING),
    Counter(33, "mem", "active", "average", "kiloBytes", "absolute", 2, "Active", _RUNNING),
    Counter(98, "mem", "consumed", "average", "kiloBytes", "absolute", 1, "Consumed", _ALL),
    Counter(125, "disk", "usage", "average", "kiloBytesPerSecond", "rate", 1, "Usage",
            _RUNNING),
    Counter(143, "net", "usage", "average", "kiloBytesPerSecond", "rate", 1, "Usage",
            _RUNNING),
    Counter(155, "sys", "uptime", "latest", "second", "absolute", 1, "Uptime", _RUNNING),
    Counter(240, "disk", "used", "latest", "kiloBytes", "absolute", 1, "Space actually used",
            frozenset({"datastore"})),
    Counter(241, "disk", "provisioned", "latest", "kiloBytes", "absolute", 1,
            "Space potentially used", frozenset({"datastore"})),
    Counter(242, "disk", "capacity", "latest", "kiloBytes", "absolute", 1, "Capacity",
            frozenset({"datastore"})),
)
_BY_KEY = {c.key: c for c in COUNTERS}
_KINDS = {"VirtualMachine": "vm", "HostSystem": "host", "ClusterComputeResource": "cluster",
          "Datastore": "datastore"}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _percent(part: float, whole: float) -> int:
    """vCenter's percent counters: hundredths of a percent."""
    return int(round(part * 10000 / whole)) if whole else 0


class _Reading:
    """The counter values of one entity now, from the simulator's accounting."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.kind = _KINDS.get(obj.kind)

    def running_since(self) -> datetime.datetime | None:
        """When the entity's samples start (None: it has none now)."""
        obj = self.obj
        if self.kind == "vm":
            return obj.boot_time if obj.powered_on and obj.host.connection_state == \
                vim.HostSystem.ConnectionState.connected else None
        if self.kind == "host":
            return obj.boot_time if obj.connection_state == \
                vim.HostSystem.ConnectionState.connected else None
        return obj.sim.started

    def values(self) -> dict[int, int]:
        return getattr(self, "_" + self.kind)()

    def _vm(self) -> dict[int, int]:
        vm = self.obj
        stats = vm._quick_stats()
        mhz = stats.overallCpuUsage
        active_kb = stats.guestMemoryUsage * 1024
        return {2: _percent(mhz, vm.num_cpus * vm.host.mhz), 6: mhz, 12: 0,
                24: _percent(stats.guestMemoryUsage, vm.memory_mb),
                29: vm.memory_mb * 1024, 33: active_kb, 98: stats.hostMemoryUsage * 1024,
                125: 0, 143: 0, 155: stats.uptimeSeconds}

    def _host(self) -> dict[int, int]:
        host = self.obj
        stats = host._quick_stats()
        active_mb = sum(v._quick_stats().guestMemoryUsage for v in host.powered_on_vms())
        return {2: _percent(stats.overallCpuUsage, host.cpu_capacity_mhz()),
                6: stats.overallCpuUsage, 12: 0,
                24: _percent(stats.overallMemoryUsage, host.memory_mb),
                29: stats.overallMemoryUsage * 1024, 33: active_mb * 1024,
                98: stats.overallMemoryUsage * 1024, 125: 0, 143: 0, 155: stats.uptime}

    def _cluster(self) -> dict[int, int]:
        hosts = self.obj.usable_hosts()
        mhz = sum(h.used_cpu_mhz() for h in hosts)
        mem_mb = sum(h.used_memory_mb() for h in hosts)
        return {2: _percent(mhz, sum(h.cpu_capacity_mhz() for h in hosts)), 6: mhz,
                24: _percent(mem_mb, sum(h.memory_mb for h in hosts)), 98: mem_mb * 1024}

    def _datastore(self) -> dict[int, int]:
        ds = self.obj
        used_kb = (ds.capacity - ds.free_space()) // 1024
        return {240: used_kb, 241: used_kb, 242: ds.capacity // 1024}


class PerformanceManager(ManagedObject):
    vim_type = vim.PerformanceManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "PerfMgr")

    # -- properties -------------------------------------------------------------------

    def _get_perfCounter(self):  # noqa: N802
        return [c.info() for c in COUNTERS]

    def _get_historicalInterval(self):  # noqa: N802
        return [vim.HistoricalInterval(key=key, samplingPeriod=period, name=name, length=length,
                                       level=1, enabled=True)
                for key, period, name, length in INTERVALS]

    def _get_description(self):
        def element(key: str, label: str) -> vim.ElementDescription:
            return vim.ElementDescription(key=key, label=label, summary=label)

        return vim.PerformanceDescription(
            counterType=[element(t, t.capitalize()) for t in
                         ("average", "summation", "latest", "maximum", "minimum", "none")],
            statsType=[element(t, t.capitalize()) for t in ("absolute", "delta", "rate")])

    # -- counters ---------------------------------------------------------------------

    def QueryPerfCounter(self, ctx: CallContext, counterId: list):  # noqa: N802,N803
        return [_BY_KEY[key].info() for key in counterId if key in _BY_KEY]

    def QueryPerfCounterByLevel(self, ctx: CallContext, level: int):  # noqa: N802
        if not 1 <= level <= 4:
            raise invalid_argument("level", "level is 1 to 4")
        return [c.info() for c in COUNTERS if c.level <= level]

    # -- what an entity has --------------------------------------------------------------

    def _reading(self, ref) -> _Reading:
        reading = _Reading(self.sim.registry.lookup(ref))
        if reading.kind is None:
            raise invalid_argument("entity", f"{ref._moId} has no performance statistics")
        return reading

    def QueryPerfProviderSummary(self, ctx: CallContext, entity):  # noqa: N802
        with self.sim.registry.lock:
            realtime = self._reading(entity).kind in _RUNNING
        return PM.ProviderSummary(entity=entity, currentSupported=realtime, summarySupported=True,
                                  refreshRate=REALTIME if realtime else -1)

    def _interval(self, reading: _Reading, interval_id: int | None) -> int:
        realtime = reading.kind in _RUNNING
        if interval_id is None:
            return REALTIME if realtime else INTERVALS[0][1]
        if interval_id == REALTIME and realtime:
            return REALTIME
        if interval_id in {period for _, period, _, _ in INTERVALS}:
            return interval_id
        raise invalid_argument("querySpec.intervalId",
                               f"{reading.obj.name} has no statistics at interval {interval_id}")

    def QueryAvailablePerfMetric(self, ctx: CallContext, entity, beginTime=None,  # noqa: N802,N803
                                 endTime=None, intervalId=None):  # noqa: N803
        with self.sim.registry.lock:
            reading = self._reading(entity)
            self._interval(reading, intervalId)
            return [PM.MetricId(counterId=c.key, instance="") for c in COUNTERS
                    if reading.kind in c.kinds]

    # -- samples ------------------------------------------------------------------------

    def _timestamps(self, reading: _Reading, spec, interval: int) -> list[datetime.datetime]:
        since = reading.running_since()
        if since is None:
            return []
        now = _now()
        end = min(spec.endTime, now) if spec.endTime is not None else now
        keep = REALTIME_SAMPLES if interval == REALTIME else \
            next(length for _, period, _, length in INTERVALS if period == interval) // interval
        start = spec.startTime if spec.startTime is not None else \
            end - datetime.timedelta(seconds=interval * keep)
        start = max(start, since - datetime.timedelta(seconds=interval))
        # Samples stand at the ends of aligned intervals, after startTime.
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        last = int((end - epoch).total_seconds()) // interval * interval
        first = int((start - epoch).total_seconds()) // interval * interval + interval
        stamps = [epoch + datetime.timedelta(seconds=t) for t in range(first, last + 1, interval)]
        stamps = stamps[-keep:]
        if spec.maxSample:
            stamps = stamps[-spec.maxSample:]
        return stamps

    def _series(self, spec) -> Any:
        reading = self._reading(spec.entity)
        interval = self._interval(reading, spec.intervalId)
        available = [c for c in COUNTERS if reading.kind in c.kinds]
        if spec.metricId:
            wanted = {m.counterId for m in spec.metricId}
            available = [c for c in available if c.key in wanted]
        stamps = self._timestamps(reading, spec, interval)
        if not stamps or not available:
            return None
        values = reading.values()
        if (spec.format or "normal") == "csv":
            sample_csv = ",".join(f"{interval},{t.strftime('%Y-%m-%dT%H:%M:%SZ')}"
                                  for t in stamps)
            return PM.EntityMetricCSV(
                entity=spec.entity, sampleInfoCSV=sample_csv,
                value=[PM.MetricSeriesCSV(id=PM.MetricId(counterId=c.key, instance=""),
                                          value=",".join([str(values[c.key])] * len(stamps)))
                       for c in available])
        if spec.format not in (None, "normal"):
            raise invalid_argument("querySpec.format", "format is normal or csv")
        return PM.EntityMetric(
            entity=spec.entity,
            sampleInfo=[PM.SampleInfo(timestamp=t, interval=interval) for t in stamps],
            value=[PM.IntSeries(id=PM.MetricId(counterId=c.key, instance=""),
                                value=[values[c.key]] * len(stamps)) for c in available])

    def QueryPerf(self, ctx: CallContext, querySpec: list):  # noqa: N802,N803
        with self.sim.registry.lock:
            results = [self._series(spec) for spec in querySpec]
        return [r for r in results if r is not None]

    def QueryPerfComposite(self, ctx: CallContext, querySpec):  # noqa: N802,N803
        """A host's samples and those of its VMs, on the same timestamps."""
        with self.sim.registry.lock:
            host = self.sim.registry.lookup(querySpec.entity)
            if host.kind != "HostSystem":
                raise invalid_argument("querySpec.entity", "composite statistics are a host's")
            entity = self._series(querySpec)
            children: list[Callable] = []
            for vm in host.vms:
                spec = PM.QuerySpec(entity=vm.ref, startTime=querySpec.startTime,
                                    endTime=querySpec.endTime, maxSample=querySpec.maxSample,
                                    metricId=querySpec.metricId, intervalId=querySpec.intervalId,
                                    format=querySpec.format)
                series = self._series(spec)
                if series is not None:
                    children.append(series)
        return PM.CompositeEntityMetric(entity=entity, childEntity=children)
