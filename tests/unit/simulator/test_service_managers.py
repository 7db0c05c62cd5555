"""ServiceContent's managers through pyVmomi: events, task collectors, list views,
performance, options, custom fields, extensions, licenses, authorization, alarms,
the user directory.
"""

from __future__ import annotations

import datetime

import pytest
import requests
from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator import vmdk_stream
from tests.unit.simulator.helpers import bind, create_vm, dc1, run, wait_until

E = vim.event
PM = vim.PerformanceManager


def _by_entity(entity, recursion="self"):
    return E.EventFilterSpec(entity=E.EventFilterSpec.ByEntity(entity=entity,
                                                                recursion=recursion))


def test_service_content_lists_every_manager(si):
    content = si.content
    for name in ("eventManager", "perfManager", "setting", "customFieldsManager",
                 "extensionManager", "licenseManager", "authorizationManager", "alarmManager",
                 "ovfManager", "userDirectory", "taskManager", "viewManager"):
        assert getattr(content, name) is not None, name


# -- events ------------------------------------------------------------------------------


def test_vm_lifecycle_events_name_their_vm_host_cluster_and_user(si, sim):
    vm = create_vm(si, sim, "lived", power_on=True)
    run(vm.PowerOffVM_Task())
    run(vm.Rename_Task("renamed"))
    events = si.content.eventManager.QueryEvents(_by_entity(vm))
    kinds = [type(e).__name__.rpartition(".")[2] for e in reversed(events)]
    for expected in ("VmCreatedEvent", "VmStartingEvent", "VmPoweredOnEvent",
                     "VmPoweredOffEvent", "VmRenamedEvent"):
        assert expected in kinds
    on = next(e for e in events if isinstance(e, E.VmPoweredOnEvent))
    assert on.vm.vm._moId == vm._moId and on.host.name == "esx-a1"
    assert on.computeResource.name == "cluster-a" and on.datacenter.name == "dc1"
    assert on.userName == sim.username
    assert on.fullFormattedMessage == "lived on esx-a1 in dc1 is powered on"
    # The task's events share its chain id.
    task_event = next(e for e in events if isinstance(e, E.TaskEvent)
                      and e.info.descriptionId == "VirtualMachine.powerOn")
    assert task_event.chainId == on.chainId
    assert events == sorted(events, key=lambda e: -e.key)  # newest first


def test_drs_evacuation_events_carry_the_drs_reason(si, sim):
    cluster = sim.cluster("cluster-a")
    run(bind(si, cluster).ReconfigureComputeResource_Task(
        vim.cluster.ConfigSpecEx(drsConfig=vim.cluster.DrsConfigInfo(enabled=True)), True))
    vm = create_vm(si, sim, "evacuee", "esx-a4", power_on=True)
    host = bind(si, sim.host("esx-a4"))
    run(host.EnterMaintenanceMode_Task(0, False), timeout=30)
    events = si.content.eventManager.QueryEvents(_by_entity(vm))
    [drs] = [e for e in events if isinstance(e, E.DrsVmMigratedEvent)]
    assert drs.sourceHost.name == "esx-a4" and drs.host.name != "esx-a4"
    assert drs.userName == ""  # the system moved it
    assert "entering maintenance mode" in drs.fullFormattedMessage
    host_events = si.content.eventManager.QueryEvents(_by_entity(host))
    assert any(isinstance(e, E.EnteredMaintenanceModeEvent) for e in host_events)


def test_event_filters_by_type_time_user_and_children(si, sim):
    em = si.content.eventManager
    start = si.CurrentTime()
    create_vm(si, sim, "filtered", power_on=True)
    found = em.QueryEvents(E.EventFilterSpec(type=[E.VmPoweredOnEvent],
                                             time=E.EventFilterSpec.ByTime(beginTime=start)))
    assert [e.vm.name for e in found] == ["filtered"]
    # All events below the cluster, the VM's among them.
    below = em.QueryEvents(_by_entity(bind(si, sim.cluster("cluster-a")), "all"))
    assert any(getattr(e.vm, "name", None) == "filtered" for e in below)
    other = em.QueryEvents(_by_entity(bind(si, sim.cluster("cluster-b")), "all"))
    assert all(getattr(e.vm, "name", None) != "filtered" for e in other)
    by_user = E.EventFilterSpec(userName=E.EventFilterSpec.ByUsername(systemUser=False,
                                                                      userList=["nobody"]))
    assert em.QueryEvents(by_user) == []
    logins = em.QueryEvents(E.EventFilterSpec(eventTypeId=["UserLoginSessionEvent"]))
    assert logins and all(isinstance(e, E.UserLoginSessionEvent) for e in logins)


def test_event_collectors_page_and_scroll(si, sim):
    em = si.content.eventManager
    vm = create_vm(si, sim, "paged")
    for _ in range(6):
        em.LogUserEvent(vm, "note")
    collector = em.CreateCollectorForEvents(E.EventFilterSpec(type=[E.GeneralUserEvent]))
    collector.SetCollectorPageSize(4)
    latest = collector.latestPage
    assert len(latest) == 4
    # Just before the latest page: ReadPrevious gives the two older ones, newest first.
    older = collector.ReadPreviousEvents(10)
    assert [e.key for e in older] == sorted((e.key for e in older), reverse=True)
    assert len(older) == 2 and max(e.key for e in older) < min(e.key for e in latest)
    collector.RewindCollector()
    assert [e.key for e in collector.ReadNextEvents(3)] == sorted(e.key for e in older + latest)[:3]
    # New events join the history.
    em.LogUserEvent(vm, "later")
    assert collector.latestPage[-1].fullFormattedMessage == "User logged event: later"
    with pytest.raises(vmodl.fault.InvalidArgument):
        collector.ReadNextEvents(0)
    collector.DestroyCollector()
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        collector.ReadNextEvents(1)


def test_post_event_keeps_what_the_client_says(si, sim):
    em = si.content.eventManager
    host = bind(si, sim.host("esx-b1"))
    em.PostEvent(E.GeneralUserEvent(
        key=0, chainId=0, createdTime=si.CurrentTime(), userName="", message="hello",
        host=E.HostEventArgument(host=host, name="esx-b1")))
    [event] = em.QueryEvents(E.EventFilterSpec(type=[E.GeneralUserEvent]))
    assert event.host.name == "esx-b1" and event.userName == sim.username


# -- task collectors and list views ------------------------------------------------------


def test_task_collectors_select_by_entity_and_state(si, sim):
    vm = create_vm(si, sim, "tasked", power_on=True)
    run(vm.PowerOffVM_Task())
    collector = si.content.taskManager.CreateCollectorForTasks(vim.TaskFilterSpec(
        entity=vim.TaskFilterSpec.ByEntity(entity=vm, recursion="self"), state=["success"]))
    assert [t.descriptionId for t in collector.latestPage] == [
        "VirtualMachine.powerOn", "VirtualMachine.powerOff"]
    assert all(t.entity._moId == vm._moId for t in collector.latestPage)
    collector.RewindCollector()
    assert [t.descriptionId for t in collector.ReadNextTasks(1)] == ["VirtualMachine.powerOn"]


def test_list_views_follow_their_objects(si, sim):
    vm = create_vm(si, sim, "listed")
    host = bind(si, sim.host("esx-a1"))
    view = si.content.viewManager.CreateListView([vm, host])
    assert {o._moId for o in view.view} == {vm._moId, host._moId}
    unresolved = view.ModifyListView(add=[vim.VirtualMachine("vm-999")], remove=[host])
    assert [o._moId for o in unresolved] == ["vm-999"]
    run(vm.Destroy_Task())
    assert view.view == []
    view.DestroyView()


# -- performance -------------------------------------------------------------------------


def test_perf_samples_agree_with_quick_stats(si, sim):
    vm = create_vm(si, sim, "measured", cpus=2, memory_mb=2048, power_on=True)
    state = sim.vm("measured")
    state.boot_time -= datetime.timedelta(minutes=5)
    pm = si.content.perfManager
    counters = {f"{c.groupInfo.key}.{c.nameInfo.key}.{c.rollupType}": c.key
                for c in pm.perfCounter}
    assert pm.QueryPerfProviderSummary(vm).currentSupported is True
    ids = [PM.MetricId(counterId=counters[n], instance="")
           for n in ("cpu.usagemhz.average", "mem.consumed.average")]
    [metric] = pm.QueryPerf([PM.QuerySpec(entity=vm, intervalId=20, maxSample=3, metricId=ids)])
    assert len(metric.sampleInfo) == 3 and metric.sampleInfo[0].interval == 20
    series = {s.id.counterId: list(s.value) for s in metric.value}
    stats = vm.summary.quickStats
    assert series[counters["cpu.usagemhz.average"]] == [stats.overallCpuUsage] * 3
    assert series[counters["mem.consumed.average"]] == [stats.hostMemoryUsage * 1024] * 3
    # A powered-off VM has no realtime samples; a cluster has no realtime at all.
    run(vm.PowerOffVM_Task())
    assert pm.QueryPerf([PM.QuerySpec(entity=vm, intervalId=20, maxSample=1)]) == []
    with pytest.raises(vmodl.fault.InvalidArgument):
        pm.QueryPerf([PM.QuerySpec(entity=bind(si, sim.cluster("cluster-a")), intervalId=20)])
    host = bind(si, sim.host("esx-a1"))
    [csv] = pm.QueryPerf([PM.QuerySpec(entity=host, maxSample=2, format="csv", metricId=[
        PM.MetricId(counterId=counters["mem.consumed.average"], instance="")])])
    assert csv.sampleInfoCSV.startswith("20,")
    assert csv.value[0].value.split(",")[0] == str(
        host.summary.quickStats.overallMemoryUsage * 1024)


# -- options, custom fields, extensions ---------------------------------------------------


def test_options_are_typed_readable_and_updatable(si, sim):
    setting = si.content.setting
    [max_age] = setting.QueryOptions("event.maxAge")
    assert max_age.value == 30
    setting.UpdateOptions([vim.option.OptionValue(key="event.maxAge", value=7)])
    assert setting.QueryOptions("event.maxAge")[0].value == 7
    with pytest.raises(vmodl.fault.InvalidArgument):
        setting.UpdateOptions([vim.option.OptionValue(key="event.maxAge", value="seven")])
    with pytest.raises(vim.fault.InvalidName):
        setting.QueryOptions("no.such.")
    host_options = bind(si, sim.host("esx-a1")).configManager.advancedOption
    assert host_options.QueryOptions("Misc.HostName")[0].value == "esx-a1"
    with pytest.raises(vim.fault.InvalidName):
        host_options.UpdateOptions([vim.option.OptionValue(key="Bogus.Key", value=1)])


def test_custom_fields_apply_to_their_type(si, sim):
    cfm = si.content.customFieldsManager
    vm = create_vm(si, sim, "tagged")
    field = cfm.AddCustomFieldDef("owner", vim.VirtualMachine)
    with pytest.raises(vim.fault.DuplicateName):
        cfm.AddCustomFieldDef("owner", vim.VirtualMachine)
    cfm.SetField(vm, field.key, "team-a")
    assert [(v.key, v.value) for v in vm.customValue] == [(field.key, "team-a")]
    assert [f.name for f in vm.availableField] == ["owner"]
    with pytest.raises(vmodl.fault.InvalidArgument):
        cfm.SetField(bind(si, sim.host("esx-a1")), field.key, "x")
    cfm.RenameCustomFieldDef(field.key, "owned-by")
    assert [f.name for f in cfm.field] == ["owned-by"]
    cfm.RemoveCustomFieldDef(field.key)
    assert vm.customValue == []


def test_extensions_register_find_and_unregister(si, sim):
    xm = si.content.extensionManager
    assert xm.FindExtension("org.openstack.compute") is None
    xm.RegisterExtension(vim.Extension(
        key="org.openstack.compute", version="1.0", lastHeartbeatTime=si.CurrentTime(),
        description=vim.Description(label="OpenStack", summary="OpenStack services")))
    assert xm.FindExtension("org.openstack.compute").description.label == "OpenStack"
    assert [e.key for e in xm.extensionList] == ["org.openstack.compute"]
    with pytest.raises(vim.fault.NotFound):
        xm.UnregisterExtension("org.example.none")
    xm.UnregisterExtension("org.openstack.compute")
    assert xm.FindExtension("org.openstack.compute") is None


# -- licenses, authorization, user directory, alarms ------------------------------------------


def test_licenses_add_assign_and_diagnose(si, sim):
    lm = si.content.licenseManager
    assert [info.editionKey for info in lm.licenses] == ["eval"]
    bad = lm.AddLicense("not-a-key")
    assert {p.key: p.value for p in bad.properties}["diagnostic"]
    key = "ABCDE-12345-FGHIJ-67890-KLMNO"
    assert lm.AddLicense(key).name == "vSphere 8 Enterprise Plus"
    assignments = lm.licenseAssignmentManager
    host_id = sim.host("esx-a1").moid
    assignments.UpdateAssignedLicense(host_id, key)
    [assigned] = assignments.QueryAssignedLicenses(host_id)
    assert assigned.assignedLicense.licenseKey == key
    assert next(i for i in lm.licenses if i.licenseKey == key).used == 1
    with pytest.raises(vmodl.fault.InvalidArgument):
        lm.RemoveLicense(key)  # in use
    assignments.RemoveAssignedLicense(host_id)
    lm.RemoveLicense(key)
    with pytest.raises(vim.fault.LicenseEntityNotFound):
        assignments.UpdateAssignedLicense("host-999", "00000-00000-00000-00000-00000")


def test_roles_permissions_and_privileges(si, sim):
    am = si.content.authorizationManager
    assert {r.name for r in am.roleList} >= {"Admin", "ReadOnly", "NoAccess"}
    role = am.AddAuthorizationRole("vm-operator", ["VirtualMachine.Interact.PowerOn"])
    with pytest.raises(vim.fault.AlreadyExists):
        am.AddAuthorizationRole("vm-operator", [])
    session = si.content.sessionManager.currentSession.key
    root = si.content.rootFolder
    assert am.HasPrivilegeOnEntity(root, session, ["VirtualMachine.Interact.PowerOn"]) == [True]
    vm = create_vm(si, sim, "guarded")
    assert vm.effectiveRole == [-1]
    user = sim.username.partition("@")[0]
    am.SetEntityPermissions(vm, [vim.AuthorizationManager.Permission(
        principal=user, group=False, roleId=role, propagate=False)])
    assert vm.effectiveRole == [role]
    [result] = am.FetchUserPrivilegeOnEntities([vm], user)
    assert "VirtualMachine.Interact.PowerOn" in result.privileges
    assert "VirtualMachine.Inventory.Delete" not in result.privileges
    with pytest.raises(vim.fault.UserNotFound):
        am.SetEntityPermissions(vm, [vim.AuthorizationManager.Permission(
            principal="nobody", group=False, roleId=role, propagate=False)])
    with pytest.raises(vim.fault.RemoveFailed):
        am.RemoveAuthorizationRole(role, True)
    am.RemoveAuthorizationRole(role, False)
    assert vm.effectiveRole == [-1]
    [admins] = root.permission
    with pytest.raises(vim.fault.AuthMinimumAdminPermission):
        am.RemoveEntityPermission(root, admins.principal, True)


def test_user_directory_finds_the_user_and_groups(si, sim):
    ud = si.content.userDirectory
    user = sim.username.partition("@")[0]
    found = ud.RetrieveUserGroups(None, user, None, None, True, True, False)
    assert [(r.principal, r.group) for r in found] == [(user, False)]
    groups = ud.RetrieveUserGroups(None, "", None, user, False, False, True)
    assert "Administrators" in {g.principal for g in groups}


def test_alarms_are_defined_per_entity(si, sim):
    am = si.content.alarmManager
    vm = create_vm(si, sim, "watched")
    spec = vim.alarm.AlarmSpec(name="off", description="VM is off", enabled=True,
                               expression=vim.alarm.StateAlarmExpression(
                                   type=vim.VirtualMachine, statePath="runtime.powerState",
                                   operator="isEqual", red="poweredOff"))
    alarm = am.CreateAlarm(vm, spec)
    with pytest.raises(vim.fault.DuplicateName):
        am.CreateAlarm(vm, spec)
    assert [a._moId for a in am.GetAlarm(vm)] == [alarm._moId]
    assert alarm.info.name == "off" and alarm.info.entity._moId == vm._moId
    am.EnableAlarmActions(vm, False)
    assert am.AreAlarmActionsEnabled(vm) is False and vm.alarmActionsEnabled is False
    assert am.GetAlarmState(vm) == []
    alarm.RemoveAlarm()
    assert am.GetAlarm(vm) == []


# -- OVF --------------------------------------------------------------------------------

_OVF = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:vmw="http://www.vmware.com/schema/ovf"
 xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
 xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
 <References><File ovf:href="appliance-disk1.vmdk" ovf:id="file1" ovf:size="{size}"/></References>
 <DiskSection><Info>disks</Info><Disk ovf:capacity="2" ovf:capacityAllocationUnits="byte * 2^20"
  ovf:diskId="vmdisk1" ovf:fileRef="file1"/></DiskSection>
 <NetworkSection><Info>nets</Info><Network ovf:name="public"><Description>The public
  network</Description></Network></NetworkSection>
 <VirtualSystem ovf:id="appliance"><Info>A VM</Info><Name>appliance</Name>
  <AnnotationSection><Info>note</Info><Annotation>an appliance</Annotation></AnnotationSection>
  <OperatingSystemSection ovf:id="101" vmw:osType="ubuntu64Guest"><Info>os</Info>
  </OperatingSystemSection>
  <VirtualHardwareSection><Info>hw</Info><System><vssd:ElementName>Virtual Hardware Family
   </vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID>
   <vssd:VirtualSystemType>vmx-15</vssd:VirtualSystemType></System>
   <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:ElementName>2 CPUs
    </rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
    <rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
   <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>1 GB
    </rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>
    <rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>
   <Item><rasd:Address>0</rasd:Address><rasd:ElementName>SCSI 0</rasd:ElementName>
    <rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
    <rasd:ResourceType>6</rasd:ResourceType></Item>
   <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>disk</rasd:ElementName>
    <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID>
    <rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
   <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
    <rasd:Connection>public</rasd:Connection><rasd:ElementName>nic</rasd:ElementName>
    <rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
    <rasd:ResourceType>10</rasd:ResourceType></Item>
   <Item><rasd:ElementName>cd</rasd:ElementName><rasd:InstanceID>6</rasd:InstanceID>
    <rasd:ResourceType>15</rasd:ResourceType></Item>
  </VirtualHardwareSection></VirtualSystem></Envelope>"""


def test_an_ovf_imports_as_govc_imports_it(si, sim):
    """ParseDescriptor, CreateImportSpec, ImportVApp, upload by fileItem, complete."""
    disk = b"".join(vmdk_stream.stream_optimized(2048, b"appliance data"))
    descriptor = _OVF.replace("{size}", str(len(disk)))
    om = si.content.ovfManager
    parsed = om.ParseDescriptor(descriptor, vim.OvfManager.ParseDescriptorParams(
        locale="", deploymentOption=""))
    assert parsed.defaultEntityName == "appliance" and not parsed.error
    assert [n.name for n in parsed.network] == ["public"]
    pool = bind(si, sim.cluster("cluster-a").resource_pool)
    public = next(n for n in dc1(si).network if n.name == "public")
    result = om.CreateImportSpec(descriptor, pool, bind(si, sim.datastores["shared-a"]),
                                 vim.OvfManager.CreateImportSpecParams(
                                     locale="", deploymentOption="", entityName="imported",
                                     networkMapping=[vim.OvfManager.NetworkMapping(
                                         name="public", network=public)]))
    assert not result.error and len(result.warning) == 1  # the CD-ROM is left out
    [item] = result.fileItem
    assert item.path == "appliance-disk1.vmdk"
    lease = pool.ImportVApp(result.importSpec, dc1(si).vmFolder, bind(si, sim.host("esx-a1")))
    wait_until(lambda: lease.state == "ready")
    [url] = [u for u in lease.info.deviceUrl if u.importKey == item.deviceId]
    assert requests.post(url.url, data=disk, timeout=10).status_code == 200
    lease.HttpNfcLeaseComplete()
    vm = sim.vm("imported")
    assert vm.num_cpus == 2 and vm.memory_mb == 1024 and vm.config.guestId == "ubuntu64Guest"
    assert vm.config.version == "vmx-15" and vm.config.annotation == "an appliance"
    assert [n.name for n in vm.networks] == ["public"]
    [vdisk] = vm.disks()
    assert vdisk.capacityInKB == 2048
    # And back: the descriptor of the VM names the disk file a client exported.
    exported = om.CreateDescriptor(bind(si, vm), vim.OvfManager.CreateDescriptorParams(
        ovfFiles=[vim.OvfManager.OvfFile(deviceId=f"/{vm.moid}/ParaVirtualSCSIController0:0",
                                         path="disk-0.vmdk", size=len(disk))]))
    again = om.ParseDescriptor(exported.ovfDescriptor, vim.OvfManager.ParseDescriptorParams(
        locale="", deploymentOption=""))
    assert again.defaultEntityName == "imported" and not again.error
    assert 'ovf:href="disk-0.vmdk"' in exported.ovfDescriptor


def test_a_descriptor_that_is_not_ovf_gives_errors_not_faults(si, sim):
    om = si.content.ovfManager
    result = om.CreateImportSpec("<not-ovf/>", bind(si, sim.cluster("cluster-a").resource_pool),
                                 bind(si, sim.datastores["shared-a"]),
                                 vim.OvfManager.CreateImportSpecParams(
                                     locale="", deploymentOption="", entityName=""))
    assert result.importSpec is None and isinstance(result.error[0], vim.fault.OvfXmlFormat)
