"""Datastore files: HostDatastoreBrowser, FileManager, VirtualDiskManager and /folder HTTP."""

from __future__ import annotations

import pytest
import requests
from pyVmomi import vim, vmodl

from tests.unit.simulator.helpers import GB, bind, create_vm, dc1, fault_of, run

Browser = vim.host.DatastoreBrowser
DiskSpec = vim.VirtualDiskManager.FileBackedVirtualDiskSpec


def _free(si, sim, name="shared-all"):
    return bind(si, sim.datastores[name]).summary.freeSpace


def _disk_spec(capacity_kb, disk_type="thin"):
    return DiskSpec(capacityKb=capacity_kb, diskType=disk_type, adapterType="lsiLogic")


@pytest.fixture
def fm(si):
    return si.content.fileManager


@pytest.fixture
def vdm(si):
    return si.content.virtualDiskManager


@pytest.fixture
def dc(si):
    return dc1(si)


# -- HostDatastoreBrowser ------------------------------------------------------------


def test_search_datastore_lists_files_with_their_kinds(si, sim):
    create_vm(si, sim, "browsed", "esx-a1", datastore="shared-all", disk_gb=2)
    ds = bind(si, sim.datastores["shared-all"])
    browser = ds.browser
    assert browser.datastore == [ds]

    top = run(browser.SearchDatastore_Task("[shared-all]", Browser.SearchSpec(
        query=[Browser.FolderQuery()])))
    assert top.datastore == ds and top.folderPath == "[shared-all]"
    assert [f.path for f in top.file] == ["browsed"]
    assert isinstance(top.file[0], Browser.FolderInfo)

    found = run(browser.SearchDatastore_Task("[shared-all] browsed", Browser.SearchSpec(
        query=[Browser.VmDiskQuery(), Browser.Query()], matchPattern=["*.vmdk"])))
    assert found.folderPath == "[shared-all] browsed/"
    (disk,) = found.file
    assert isinstance(disk, Browser.VmDiskInfo)
    assert disk.path == "browsed.vmdk" and disk.capacityKb == 2 * 1024 * 1024

    everything = run(browser.SearchDatastore_Task("[shared-all] browsed", None))
    assert sorted(f.path for f in everything.file) == ["browsed.vmdk", "browsed.vmx"]


def test_search_datastore_faults(si, sim):
    browser = bind(si, sim.datastores["shared-all"]).browser
    fault = fault_of(browser.SearchDatastore_Task("[shared-all] no-such-dir", None))
    assert isinstance(fault, vim.fault.FileNotFound)
    fault = fault_of(browser.SearchDatastore_Task("[no-such-ds] x", None))
    assert isinstance(fault, vim.fault.InvalidDatastore)
    fault = fault_of(browser.SearchDatastore_Task("not a datastore path", None))
    assert isinstance(fault, vim.fault.InvalidDatastore)


def test_search_sub_folders_walks_the_tree(si, sim, fm, dc):
    fm.MakeDirectory("[shared-all] a/b/c", dc, True)
    sim.datastores["shared-all"].store_file("a/b/img.vmdk", b"x" * 10)
    sim.datastores["shared-all"].store_file("a/readme.txt", b"hello")
    browser = bind(si, sim.datastores["shared-all"]).browser
    results = run(browser.SearchDatastoreSubFolders_Task("[shared-all] a", Browser.SearchSpec(
        matchPattern=["*.vmdk", "*.txt"])))
    by_folder = {r.folderPath: sorted(f.path for f in r.file) for r in results}
    assert by_folder == {"[shared-all] a/": ["readme.txt"], "[shared-all] a/b/": ["img.vmdk"],
                         "[shared-all] a/b/c/": []}
    sizes = {f.path: f.fileSize for r in results for f in r.file}
    assert sizes == {"readme.txt": 5, "img.vmdk": 10}


# -- FileManager ------------------------------------------------------------------------------


def test_make_directory_and_its_faults(si, sim, fm, dc):
    assert fm.MakeDirectory("[shared-all] images", dc, False) is None
    assert sim.files.get("shared-all", "images").is_dir
    with pytest.raises(vim.fault.FileAlreadyExists) as exc:
        fm.MakeDirectory("[shared-all] images", dc, False)
    assert exc.value.file == "[shared-all] images"
    with pytest.raises(vim.fault.FileNotFound):
        fm.MakeDirectory("[shared-all] deep/er/still", dc, False)
    assert not sim.files.exists("shared-all", "deep")
    fm.MakeDirectory("[shared-all] deep/er/still", dc, True)
    assert sim.files.get("shared-all", "deep/er").is_dir
    with pytest.raises(vim.fault.InvalidDatastore):
        fm.MakeDirectory("[nowhere] x", dc, False)


def test_delete_datastore_file_frees_space(si, sim, fm, dc):
    free = _free(si, sim)
    ds = sim.datastores["shared-all"]
    ds.store_file("tmp/blob.bin", b"z" * 4096)
    ds.store_file("tmp/sub/blob2.bin", b"z" * 1024)
    assert free - _free(si, sim) == 5120
    run(fm.DeleteDatastoreFile_Task("[shared-all] tmp/blob.bin", dc))
    assert free - _free(si, sim) == 1024
    # Directories go with everything in them.
    run(fm.DeleteDatastoreFile_Task("[shared-all] tmp", dc))
    assert _free(si, sim) == free
    assert not sim.files.exists("shared-all", "tmp")
    fault = fault_of(fm.DeleteDatastoreFile_Task("[shared-all] tmp", dc))
    assert isinstance(fault, vim.fault.FileNotFound)
    assert fault.file == "[shared-all] tmp"


def test_delete_a_disk_of_a_running_vm_is_refused(si, sim, fm, dc):
    create_vm(si, sim, "busy", "esx-a1", datastore="shared-all", disk_gb=1, power_on=True)
    fault = fault_of(fm.DeleteDatastoreFile_Task("[shared-all] busy/busy.vmdk", dc))
    assert isinstance(fault, vim.fault.FileLocked)
    assert sim.files.exists("shared-all", "busy/busy.vmdk")


def test_move_datastore_file(si, sim, fm, dc):
    ds = sim.datastores["shared-all"]
    ds.store_file("src/a.txt", b"A")
    ds.store_file("dst/b.txt", b"B")
    run(fm.MoveDatastoreFile_Task("[shared-all] src/a.txt", dc, "[shared-all] dst/a.txt", dc,
                                  False))
    assert not sim.files.exists("shared-all", "src/a.txt")
    assert sim.files.get("shared-all", "dst/a.txt").data == b"A"
    fault = fault_of(fm.MoveDatastoreFile_Task("[shared-all] dst/a.txt", dc,
                                               "[shared-all] dst/b.txt", dc, False))
    assert isinstance(fault, vim.fault.FileAlreadyExists)
    assert sim.files.get("shared-all", "dst/b.txt").data == b"B"
    run(fm.MoveDatastoreFile_Task("[shared-all] dst/a.txt", dc, "[shared-all] dst/b.txt", dc,
                                  True))
    assert sim.files.get("shared-all", "dst/b.txt").data == b"A"
    fault = fault_of(fm.MoveDatastoreFile_Task("[shared-all] src/gone", dc,
                                               "[shared-all] dst/c", dc, False))
    assert isinstance(fault, vim.fault.FileNotFound)


def test_move_and_copy_between_datastores_account_space(si, sim, fm, dc):
    sim.datastores["shared-a"].store_file("payload/data.bin", b"p" * 8192)
    free_a, free_all = _free(si, sim, "shared-a"), _free(si, sim, "shared-all")
    run(fm.CopyDatastoreFile_Task("[shared-a] payload", dc, "[shared-all] payload", dc, False))
    assert _free(si, sim, "shared-a") == free_a
    assert free_all - _free(si, sim, "shared-all") == 8192
    assert sim.files.get("shared-all", "payload/data.bin").data == b"p" * 8192
    fault = fault_of(fm.CopyDatastoreFile_Task("[shared-a] payload", dc,
                                               "[shared-all] payload", dc, False))
    assert isinstance(fault, vim.fault.FileAlreadyExists)
    run(fm.MoveDatastoreFile_Task("[shared-a] payload", dc, "[shared-b] payload", dc, False))
    assert _free(si, sim, "shared-a") == free_a + 8192
    assert sim.files.exists("shared-b", "payload/data.bin")


# -- VirtualDiskManager ----------------------------------------------------------------------


def test_create_virtual_disk_consumes_space(si, sim, fm, vdm, dc):
    fm.MakeDirectory("[shared-all] disks", dc, False)
    free = _free(si, sim)
    name = "[shared-all] disks/data.vmdk"
    assert run(vdm.CreateVirtualDisk_Task(name, dc, _disk_spec(1024 * 1024))) == name
    assert free - _free(si, sim) == GB
    entry = sim.files.get("shared-all", "disks/data.vmdk")
    assert entry.disk_capacity_kb == 1024 * 1024 and entry.thin
    fault = fault_of(vdm.CreateVirtualDisk_Task(name, dc, _disk_spec(1024)))
    assert isinstance(fault, vim.fault.FileAlreadyExists)
    fault = fault_of(vdm.CreateVirtualDisk_Task("[shared-all] nodir/d.vmdk", dc,
                                                _disk_spec(1024)))
    assert isinstance(fault, vim.fault.FileNotFound)
    too_big = (_free(si, sim) // 1024) + 1
    fault = fault_of(vdm.CreateVirtualDisk_Task("[shared-all] disks/huge.vmdk", dc,
                                                _disk_spec(too_big, "preallocated")))
    assert isinstance(fault, vim.fault.FileFault)  # NoDiskSpace
    assert not sim.files.exists("shared-all", "disks/huge.vmdk")


def test_virtual_disk_specs_name_types_the_disk_manager_knows(si, sim, fm, vdm, dc):
    """Its adapter types are the vmdk descriptor's: not the newer controllers' names."""
    fm.MakeDirectory("[shared-all] typed", dc, False)
    for disk_type, adapter, bad in (("mirrored", "lsiLogic", "spec.diskType"),
                                    ("thin", "paraVirtual", "spec.adapterType")):
        spec = DiskSpec(capacityKb=1024, diskType=disk_type, adapterType=adapter)
        fault = fault_of(vdm.CreateVirtualDisk_Task("[shared-all] typed/d.vmdk", dc, spec))
        assert isinstance(fault, vmodl.fault.InvalidArgument) and fault.invalidProperty == bad
    assert not sim.files.exists("shared-all", "typed/d.vmdk")
    run(vdm.CreateVirtualDisk_Task("[shared-all] typed/d.vmdk", dc, _disk_spec(1024)))
    fault = fault_of(vdm.CopyVirtualDisk_Task(
        "[shared-all] typed/d.vmdk", dc, "[shared-all] typed/e.vmdk", dc,
        vim.VirtualDiskManager.VirtualDiskSpec(diskType="thin", adapterType="lsiLogicsas"),
        False))
    assert isinstance(fault, vmodl.fault.InvalidArgument)
    assert fault.invalidProperty == "destSpec.adapterType"
    assert not sim.files.exists("shared-all", "typed/e.vmdk")


def test_copy_extend_and_delete_virtual_disks(si, sim, fm, vdm, dc):
    fm.MakeDirectory("[shared-all] d", dc, False)
    src, dst = "[shared-all] d/src.vmdk", "[shared-all] d/dst.vmdk"
    run(vdm.CreateVirtualDisk_Task(src, dc, _disk_spec(2 * 1024 * 1024)))
    free = _free(si, sim)
    run(vdm.CopyVirtualDisk_Task(src, dc, dst, dc, None, False))
    assert free - _free(si, sim) == 2 * GB
    assert sim.files.get("shared-all", "d/dst.vmdk").disk_capacity_kb == 2 * 1024 * 1024
    fault = fault_of(vdm.CopyVirtualDisk_Task(src, dc, dst, dc, None, False))
    assert isinstance(fault, vim.fault.FileAlreadyExists)
    fault = fault_of(vdm.CopyVirtualDisk_Task("[shared-all] d/none.vmdk", dc,
                                              "[shared-all] d/x.vmdk", dc, None, False))
    assert isinstance(fault, vim.fault.FileNotFound)

    run(vdm.ExtendVirtualDisk_Task(dst, dc, 3 * 1024 * 1024, False))
    assert sim.files.get("shared-all", "d/dst.vmdk").disk_capacity_kb == 3 * 1024 * 1024
    assert free - _free(si, sim) == 3 * GB
    fault = fault_of(vdm.ExtendVirtualDisk_Task(dst, dc, 1024 * 1024, False))
    assert isinstance(fault, vmodl.fault.InvalidArgument)
    assert fault.invalidProperty == "newCapacityKb"
    assert sim.files.get("shared-all", "d/dst.vmdk").disk_capacity_kb == 3 * 1024 * 1024

    run(vdm.DeleteVirtualDisk_Task(dst, dc))
    assert _free(si, sim) == free
    assert not sim.files.exists("shared-all", "d/dst.vmdk")
    fault = fault_of(vdm.DeleteVirtualDisk_Task(dst, dc))
    assert isinstance(fault, vim.fault.FileNotFound)


def test_extend_a_vms_disk_updates_the_vm_and_needs_it_off(si, sim, vdm, dc):
    vm = create_vm(si, sim, "grow", "esx-a1", datastore="shared-all", disk_gb=1, power_on=True)
    name = "[shared-all] grow/grow.vmdk"
    assert isinstance(fault_of(vdm.ExtendVirtualDisk_Task(name, dc, 2 * 1024 * 1024, False)),
                      vim.fault.FileLocked)
    run(vm.PowerOffVM_Task())
    run(vdm.ExtendVirtualDisk_Task(name, dc, 2 * 1024 * 1024, False))
    disk = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk))
    assert disk.capacityInKB == 2 * 1024 * 1024
    assert disk.capacityInBytes == 2 * GB


# -- datastore HTTP interface -------------------------------------------------------------


def _url(sim_server, path, ds="shared-all", dc_path="dc1"):
    return (f"http://127.0.0.1:{sim_server.port}/folder/{path}"
            f"?dcPath={dc_path}&dsName={ds}")


def test_folder_put_get_head_with_the_session_cookie(si, sim, sim_server):
    cookie = {"Cookie": si._stub.cookie}
    free = _free(si, sim)
    body = b"\x00image-bytes" * 1000
    resp = requests.put(_url(sim_server, "images/cirros.vmdk"), data=body, headers=cookie,
                        timeout=10)
    assert resp.status_code in (200, 201)
    assert free - _free(si, sim) == len(body)
    assert sim.files.get("shared-all", "images/cirros.vmdk").data == body
    got = requests.get(_url(sim_server, "images/cirros.vmdk"), headers=cookie, timeout=10)
    assert got.status_code == 200 and got.content == body
    head = requests.head(_url(sim_server, "images/cirros.vmdk"), headers=cookie, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(body)
    assert head.content == b""
    # The upload is a file like any other for the datastore browser.
    browser = bind(si, sim.datastores["shared-all"]).browser
    result = run(browser.SearchDatastore_Task("[shared-all] images", None))
    assert [(f.path, f.fileSize) for f in result.file] == [("cirros.vmdk", len(body))]


def test_folder_interface_auth_and_errors(si, sim, sim_server):
    url = _url(sim_server, "x/file.txt")
    assert requests.put(url, data=b"x", timeout=10).status_code == 401
    assert requests.get(url, headers={"Cookie": 'vmware_soap_session="bogus"'},
                        timeout=10).status_code == 401
    auth = (sim.username, sim.password)
    assert requests.put(url, data=b"basic", auth=auth, timeout=10).status_code in (200, 201)
    assert requests.get(url, auth=auth, timeout=10).content == b"basic"
    assert requests.get(url, auth=(sim.username, "wrong"), timeout=10).status_code == 401
    assert requests.get(_url(sim_server, "x/missing"), auth=auth, timeout=10).status_code == 404
    assert requests.get(_url(sim_server, "x/file.txt", ds="nope"), auth=auth,
                        timeout=10).status_code == 404
    assert requests.get(_url(sim_server, "x/file.txt", dc_path="dc9"), auth=auth,
                        timeout=10).status_code == 404
    # A disk created through the API is served as its descriptor.
    create_vm(si, sim, "served", "esx-a1", datastore="shared-all", disk_gb=1)
    desc = requests.get(_url(sim_server, "served/served.vmdk"), auth=auth, timeout=10)
    assert desc.status_code == 200 and b"Disk DescriptorFile" in desc.content


def test_folder_put_beyond_free_space_is_refused(si, sim, sim_server):
    ds = sim.datastores["shared-all"]
    ds.capacity = sim.files.used_bytes("shared-all") + 100
    resp = requests.put(_url(sim_server, "big.bin"), data=b"b" * 1000,
                        auth=(sim.username, sim.password), timeout=10)
    assert resp.status_code >= 400
    assert not sim.files.exists("shared-all", "big.bin")
    assert _free(si, sim) == 100
