"""OptionManager: vCenter's advanced settings ("VpxSettings") and each host's.

Settings are readable (``setting``, ``QueryOptions`` by key or by prefix
ending in ".") and updatable (``UpdateOptions``). A value must have its
option's type and lie within its range (InvalidArgument otherwise); vCenter
takes new keys of its own, a host refuses keys it does not know
(InvalidName), as on ESXi. Values keep their type on the wire
(``xsd:int``, ``xsd:long``, ``xsd:boolean``, ``xsd:string``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyVmomi import VmomiSupport, vim

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

_long = VmomiSupport.GetVmodlType("long")
_INT_MAX = 2 ** 31 - 1


def _int(key: str, label: str, default: int, low: int = 0, high: int = _INT_MAX):
    return key, label, vim.option.IntOption(min=low, max=high, defaultValue=default), default


def _long_opt(key: str, label: str, default: int, low: int = 0, high: int = 2 ** 63 - 1):
    return key, label, vim.option.LongOption(min=low, max=high, defaultValue=default), \
        _long(default)


def _str(key: str, label: str, default: str):
    return key, label, vim.option.StringOption(defaultValue=default), default


def _bool(key: str, label: str, default: bool):
    return key, label, vim.option.BoolOption(supported=True, defaultValue=default), default


def vcenter_options(sim: Simulator) -> list:
    return [
        _str("VirtualCenter.InstanceName", "vCenter Server name", "127.0.0.1"),
        _str("VirtualCenter.FQDN", "vCenter Server managed address", "127.0.0.1"),
        _str("VirtualCenter.ManagedIP", "vCenter Server managed IP", "127.0.0.1"),
        _int("VirtualCenter.InstanceId", "vCenter Server unique ID", 0, 0, 63),
        _bool("VirtualCenter.AutoManagedIPV4", "Auto managed IPv4", True),
        _int("event.maxAge", "Maximum event age (days)", 30, 0, 1000),
        _bool("event.maxAgeEnabled", "Event cleanup", True),
        _int("task.maxAge", "Maximum task age (days)", 30, 0, 1000),
        _bool("task.maxAgeEnabled", "Task cleanup", True),
        _int("config.vpxd.stats.maxQueryMetrics", "Maximum metrics per query", 64, -1),
        _int("vpxd.stats.maxQueryMetrics", "Maximum metrics per query", 64, -1),
        _long_opt("config.vpxd.sso.solutionUser.tokenLifetime", "SSO token lifetime (s)",
                  3600),
        _str("mail.sender", "Mail sender", ""),
        _str("mail.smtp.server", "SMTP server", ""),
        _int("mail.smtp.port", "SMTP port", 25, 1, 65535),
        _int("client.timeout.normal", "Normal operation timeout (s)", 30, 1),
        _int("client.timeout.long", "Long operation timeout (s)", 120, 1),
        _str("instance.id", "Instance UUID", sim.instance_uuid),
    ]


def host_options(host: Any) -> list:
    return [
        _int("Mem.MemEagerZero", "Zero pages of user worlds", 0, 0, 1),
        _int("Mem.ShareScanGHz", "Page sharing scan rate", 4, 0, 32),
        _int("Net.TcpipHeapSize", "TCP/IP heap size (MB)", 0, 0, 32),
        _int("Net.TcpipHeapMax", "TCP/IP heap maximum (MB)", 512, 32, 1576),
        _int("Misc.HostAgentUpdateLevel", "Host agent update level", 3, 0, 3),
        _str("Misc.HostName", "Host name", host.name),
        _str("Config.HostAgent.log.level", "Host agent log level", "info"),
        _bool("UserVars.SuppressShellWarning", "Suppress the shell warning", False),
        _long_opt("VMkernel.Boot.maxVMs", "Maximum VMs", 1024, 1, 1024),
        _int("NFS.MaxVolumes", "Maximum NFS volumes", 8, 8, 256),
        _str("Syslog.global.logHost", "Remote syslog hosts", ""),
    ]


class OptionManager(ManagedObject):
    vim_type = vim.option.OptionManager
    moid_prefix = "OptionManager"

    def __init__(self, sim: Simulator, moid: str, options: list, *,
                 accepts_new_keys: bool) -> None:
        super().__init__(sim, moid)
        self.defs = {key: vim.option.OptionDef(key=key, label=label, summary=label,
                                               optionType=otype)
                     for key, label, otype, _ in options}
        self.values: dict[str, Any] = {key: default for key, _, _, default in options}
        self.accepts_new_keys = accepts_new_keys

    def _option_values(self, keys: list[str]) -> list:
        return [vim.option.OptionValue(key=k, value=self.values[k]) for k in keys]

    def _get_setting(self):
        return self._option_values(sorted(self.values))

    def _get_supportedOption(self):  # noqa: N802
        return list(self.defs.values())

    def QueryOptions(self, ctx: CallContext, name: str | None = None):  # noqa: N802
        """Every setting, one by its key, or those under a prefix ending in "."."""
        with self.sim.registry.lock:
            keys = sorted(self.values)
            if name:
                keys = [k for k in keys if k.startswith(name)] if name.endswith(".") else \
                    [k for k in keys if k == name]
                if not keys:
                    raise vim.fault.InvalidName(name=name, msg=f"Invalid name: {name}")
            return self._option_values(keys)

    def UpdateOptions(self, ctx: CallContext, changedValue: list) -> None:  # noqa: N802,N803
        """Set values; all are checked before any changes (all or nothing)."""
        with self.sim.registry.lock:
            changes = {}
            for option in changedValue:
                changes[option.key] = self._checked(option.key, option.value)
            self.values.update(changes)
            self.sim.registry.touch()

    def _checked(self, key: str, value: Any) -> Any:
        definition = self.defs.get(key)
        if definition is None:
            if key not in self.values and not self.accepts_new_keys:
                raise vim.fault.InvalidName(name=key, msg=f"Invalid name: {key}")
            return value if value is not None else ""
        otype = definition.optionType
        where = f"changedValue[{key}]"
        if isinstance(otype, vim.option.BoolOption):
            if not isinstance(value, bool):
                raise invalid_argument(where, f"{key} takes a boolean")
            return value
        if isinstance(otype, (vim.option.IntOption, vim.option.LongOption)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise invalid_argument(where, f"{key} takes an integer")
            if not otype.min <= value <= otype.max:
                raise invalid_argument(where, f"{key} is {otype.min} to {otype.max}")
            return _long(value) if isinstance(otype, vim.option.LongOption) else int(value)
        if not isinstance(value, str):
            raise invalid_argument(where, f"{key} takes a string")
        return value
