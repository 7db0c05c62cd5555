"""vim_data.clone: the simulator's deep copy of vim25 values, as copy.deepcopy makes it;
vim_data.data_object: a data object as its constructor makes it, unchecked.

VM configurations are copied on every reconfigure, snapshot, clone and
migration, and every new VM starts from a copy of the default devices: the
copy must be as deep and as faithful as ``copy.deepcopy``'s.
"""

from __future__ import annotations

import copy
import datetime

import pytest
from pyVmomi import SoapAdapter, vim, vmodl

from nova_vsphere_driver.simulator.vim_data import clone, data_object
from tests.unit.simulator.helpers import create_vm


def _wire(value) -> str:
    return SoapAdapter.SerializeToStr(value)


def test_a_vm_config_clone_is_what_deepcopy_makes_and_shares_nothing_mutable(si, sim):
    create_vm(si, sim, "cloned", power_on=True)
    original = sim.vm("cloned").config
    before = _wire(original)
    copied = clone(original)
    assert _wire(copied) == _wire(copy.deepcopy(original)) == before
    assert type(copied) is type(original)
    assert type(copied.hardware.device) is type(original.hardware.device)
    # Changing any part of the copy leaves the original as it was.
    copied.name = "other"
    copied.hardware.device[0].deviceInfo.label = "changed"
    copied.hardware.device.append(vim.vm.device.VirtualKeyboard(key=9999))
    copied.extraConfig.append(vim.option.OptionValue(key="k", value="v"))
    assert _wire(original) == before
    # References and immutable values are shared, as deepcopy shares them.
    assert copied.hardware.device[1] is not original.hardware.device[1]


def test_shared_parts_stay_shared_and_faults_are_copied_too():
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName="[ds] a/a.vmdk",
                                                           diskMode="persistent")
    disks = [vim.vm.device.VirtualDisk(key=2000, backing=backing, capacityInKB=1),
             vim.vm.device.VirtualDisk(key=2001, backing=backing, capacityInKB=2)]
    copied = clone(disks)
    assert copied[0].backing is copied[1].backing
    assert copied[0].backing is not backing
    when = datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)
    info = vim.TaskInfo(key="task-1", task=vim.Task("task-1"), state="error",
                        descriptionId="x", cancelled=False, cancelable=False,
                        queueTime=when, eventChainId=1, reason=vim.TaskReasonUser(userName="u"),
                        error=vmodl.fault.InvalidArgument(invalidProperty="spec"))
    copied_info = clone(info)
    assert _wire(copied_info) == _wire(info)
    assert copied_info.error is not info.error
    copied_info.error.invalidProperty = "other"
    assert info.error.invalidProperty == "spec"


@pytest.mark.parametrize("cls, fields", [
    (vim.TaskInfo, {"key": "task-1", "task": vim.Task("task-1"), "state": "success",
                    "cancelled": False, "cancelable": False, "descriptionId": "Folder.createVm",
                    "queueTime": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
                    "eventChainId": 7, "result": vim.VirtualMachine("vm-1"),
                    "reason": vim.TaskReasonUser(userName="root")}),
    (vim.event.VmPoweredOnEvent, {"vm": vim.event.VmEventArgument(vm=vim.VirtualMachine("vm-1"),
                                                                 name="a"), "template": False}),
    (vim.vm.VirtualHardware, {"numCPU": 2, "memoryMB": 512}),
    (vim.vm.ConfigInfo, {"name": "x", "extraConfig": [vim.option.OptionValue(key="k", value="v")],
                         "memoryHotAddEnabled": True}),
    (vim.vm.FlagInfo, {}),
])
def test_data_object_is_what_the_constructor_makes(cls, fields):
    made = data_object(cls, **fields)
    checked = cls(**fields)
    assert type(made) is cls
    assert made.__dict__ == checked.__dict__
    # Arrays are typed and the object's own.
    for name, value in made.__dict__.items():
        if isinstance(value, list):
            assert type(value) is type(checked.__dict__[name])
            if name not in fields:
                assert value is not data_object(cls, **fields).__dict__[name]


def test_data_object_refuses_a_field_the_type_lacks():
    with pytest.raises(AttributeError, match="nosuch"):
        data_object(vim.TaskInfo, key="task-1", nosuch=1)
