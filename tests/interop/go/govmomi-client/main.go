// A vSphere client on govmomi's library, making the calls govc, Terraform's
// vSphere provider and Kubernetes' cloud provider make, against the
// simulator: finder paths, whole-object property reads, VM create, power,
// reconfigure, migrate, clone (full and linked) and destroy, snapshots,
// events, task collectors, performance queries, custom fields, options,
// licenses, roles, list views and property waits, and session keep-alive
// with re-login after the session is lost.
//
// Every step prints one JSON line: {"step", "ok", "error", "data"}; the
// program goes on after a failed step where it can and exits 1 if any
// failed. The tests (tests/interop/test_govmomi_client.py) read the lines.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/vmware/govmomi/event"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/license"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/performance"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type result struct {
	Step  string      `json:"step"`
	OK    bool        `json:"ok"`
	Error string      `json:"error,omitempty"`
	Data  interface{} `json:"data,omitempty"`
}

var failed bool

// step runs f and prints its outcome; a panic is a failed step too.
func step(name string, f func() (interface{}, error)) {
	var data interface{}
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		data, err = f()
	}()
	out := result{Step: name, OK: err == nil, Data: data}
	if err != nil {
		out.Error = err.Error()
		failed = true
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}

type client struct {
	vim    *vim25.Client
	url    *url.URL
	finder *find.Finder
	pc     *property.Collector
}

func connect(ctx context.Context, u *url.URL, caFile string) (*client, error) {
	sc := soap.NewClient(u, false)
	if caFile != "" {
		if err := sc.SetRootCAs(caFile); err != nil {
			return nil, err
		}
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, err
	}
	if err := session.NewManager(vc).Login(ctx, u.User); err != nil {
		return nil, err
	}
	return &client{vim: vc, url: u, finder: find.NewFinder(vc, true),
		pc: property.DefaultCollector(vc)}, nil
}

// control asks the simulator's control endpoint for an operator action.
func (c *client) control(action string) error {
	body, _ := json.Marshal(map[string]string{"action": action})
	u := *c.url
	u.Path = "/simulator/control"
	u.User = nil
	req, _ := http.NewRequest("POST", u.String(), bytes.NewReader(body))
	password, _ := c.url.User.Password()
	req.SetBasicAuth(c.url.User.Username(), password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.vim.Client.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("control %s: HTTP %d", action, resp.StatusCode)
	}
	return nil
}

func main() {
	rawURL := flag.String("url", "", "https://user:password@127.0.0.1:port/sdk")
	caFile := flag.String("ca", "", "CA certificate file that signed the server's")
	flag.Parse()
	u, err := soap.ParseURL(*rawURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	var c *client
	step("connect", func() (interface{}, error) {
		c, err = connect(ctx, u, *caFile)
		if err != nil {
			return nil, err
		}
		about := c.vim.ServiceContent.About
		return map[string]string{"apiType": about.ApiType, "apiVersion": about.ApiVersion}, nil
	})
	if c == nil {
		os.Exit(1)
	}
	run(ctx, c)
	if failed {
		os.Exit(1)
	}
}

func run(ctx context.Context, c *client) {
	var dc *object.Datacenter
	var pool *object.ResourcePool
	var hosts []*object.HostSystem
	var ds *object.Datastore
	var network object.NetworkReference
	var folder *object.Folder

	step("finder", func() (interface{}, error) {
		var err error
		if dc, err = c.finder.DefaultDatacenter(ctx); err != nil {
			return nil, err
		}
		c.finder.SetDatacenter(dc)
		if hosts, err = c.finder.HostSystemList(ctx, "cluster-a/*"); err != nil {
			return nil, err
		}
		clusters, err := c.finder.ClusterComputeResourceList(ctx, "*")
		if err != nil {
			return nil, err
		}
		if pool, err = c.finder.ResourcePool(ctx, "cluster-a/Resources"); err != nil {
			return nil, err
		}
		if ds, err = c.finder.Datastore(ctx, "shared-a"); err != nil {
			return nil, err
		}
		if network, err = c.finder.Network(ctx, "VM Network"); err != nil {
			return nil, err
		}
		if folder, err = c.finder.Folder(ctx, "vm"); err != nil {
			return nil, err
		}
		// Inventory paths as govc prints them, and back through the SearchIndex.
		byPath, err := object.NewSearchIndex(c.vim).FindByInventoryPath(ctx, hosts[0].InventoryPath)
		if err != nil || byPath == nil {
			return nil, fmt.Errorf("FindByInventoryPath(%s): %v", hosts[0].InventoryPath, err)
		}
		hostNames := []string{}
		for _, h := range hosts {
			hostNames = append(hostNames, h.InventoryPath)
		}
		sort.Strings(hostNames)
		clusterNames := []string{}
		for _, cl := range clusters {
			clusterNames = append(clusterNames, cl.Name())
		}
		sort.Strings(clusterNames)
		return map[string]interface{}{"datacenter": dc.InventoryPath, "hosts": hostNames,
			"clusters": clusterNames, "pool": pool.InventoryPath, "datastore": ds.Name()}, nil
	})
	if pool == nil || ds == nil || folder == nil || len(hosts) < 2 {
		return
	}

	step("whole_object_reads", func() (interface{}, error) {
		// nil property paths: every property, as govc object.collect and
		// Terraform's data sources read them, decoded into govmomi's types.
		var hostObjs []mo.HostSystem
		var clusterObjs []mo.ClusterComputeResource
		var dsObjs []mo.Datastore
		var dcObj mo.Datacenter
		var poolObj mo.ResourcePool
		refs := []types.ManagedObjectReference{}
		for _, h := range hosts {
			refs = append(refs, h.Reference())
		}
		if err := c.pc.Retrieve(ctx, refs, nil, &hostObjs); err != nil {
			return nil, fmt.Errorf("hosts: %v", err)
		}
		clusters, _ := c.finder.ClusterComputeResourceList(ctx, "*")
		crefs := []types.ManagedObjectReference{}
		for _, cl := range clusters {
			crefs = append(crefs, cl.Reference())
		}
		if err := c.pc.Retrieve(ctx, crefs, nil, &clusterObjs); err != nil {
			return nil, fmt.Errorf("clusters: %v", err)
		}
		if err := c.pc.Retrieve(ctx, []types.ManagedObjectReference{ds.Reference()}, nil, &dsObjs); err != nil {
			return nil, fmt.Errorf("datastores: %v", err)
		}
		if err := c.pc.RetrieveOne(ctx, dc.Reference(), nil, &dcObj); err != nil {
			return nil, fmt.Errorf("datacenter: %v", err)
		}
		if err := c.pc.RetrieveOne(ctx, pool.Reference(), nil, &poolObj); err != nil {
			return nil, fmt.Errorf("pool: %v", err)
		}
		// One property path with a 64-bit value.
		var total mo.ClusterComputeResource
		if err := c.pc.RetrieveOne(ctx, crefs[0], []string{"summary.totalMemory"}, &total); err != nil {
			return nil, fmt.Errorf("summary.totalMemory: %v", err)
		}
		return map[string]interface{}{
			"host_memory":      hostObjs[0].Summary.Hardware.MemorySize,
			"host_config_mgr":  hostObjs[0].ConfigManager.AdvancedOption != nil,
			"cluster_memory":   clusterObjs[0].Summary.GetComputeResourceSummary().TotalMemory,
			"datastore_free":   dsObjs[0].Summary.FreeSpace,
			"datacenter_name":  dcObj.Name,
			"pool_vms":         len(poolObj.Vm),
			"disabled_methods": len(hostObjs[0].DisabledMethod),
		}, nil
	})

	var vm *object.VirtualMachine
	step("create_vm", func() (interface{}, error) {
		var devices object.VirtualDeviceList
		scsi, err := devices.CreateSCSIController("pvscsi")
		if err != nil {
			return nil, err
		}
		devices = append(devices, scsi)
		controller, err := devices.FindDiskController("scsi")
		if err != nil {
			return nil, err
		}
		disk := devices.CreateDisk(controller, ds.Reference(), "")
		disk.CapacityInKB = 1024 * 1024
		devices = append(devices, disk)
		backing, err := network.EthernetCardBackingInfo(ctx)
		if err != nil {
			return nil, err
		}
		nic, err := devices.CreateEthernetCard("vmxnet3", backing)
		if err != nil {
			return nil, err
		}
		devices = append(devices, nic)
		changes, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
		if err != nil {
			return nil, err
		}
		spec := types.VirtualMachineConfigSpec{
			Name: "go-vm", GuestId: "otherGuest64", NumCPUs: 1, MemoryMB: 512,
			Files:        &types.VirtualMachineFileInfo{VmPathName: "[shared-a]"},
			DeviceChange: changes,
		}
		task, err := folder.CreateVM(ctx, spec, pool, hosts[0])
		if err != nil {
			return nil, err
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return nil, err
		}
		vm = object.NewVirtualMachine(c.vim, info.Result.(types.ManagedObjectReference))
		list, err := vm.Device(ctx)
		if err != nil {
			return nil, err
		}
		labels := map[string]int32{}
		for _, d := range list {
			dev := d.GetVirtualDevice()
			labels[list.Name(d)] = dev.Key
			if dev.DeviceInfo != nil {
				labels[dev.DeviceInfo.GetDescription().Label] = dev.Key
			}
		}
		return labels, nil
	})
	if vm == nil {
		return
	}

	step("reconfigure", func() (interface{}, error) {
		task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{
			MemoryMB: 768, Annotation: "reconfigured by govmomi"})
		if err != nil {
			return nil, err
		}
		if err := task.Wait(ctx); err != nil {
			return nil, err
		}
		var props mo.VirtualMachine
		if err := c.pc.RetrieveOne(ctx, vm.Reference(), nil, &props); err != nil {
			return nil, err
		}
		return map[string]interface{}{"memory": props.Config.Hardware.MemoryMB,
			"annotation": props.Config.Annotation, "host": props.Runtime.Host.Value}, nil
	})

	step("power", func() (interface{}, error) {
		task, err := vm.PowerOn(ctx)
		if err != nil {
			return nil, err
		}
		if err := task.Wait(ctx); err != nil {
			return nil, err
		}
		if err := vm.WaitForPowerState(ctx, types.VirtualMachinePowerStatePoweredOn); err != nil {
			return nil, err
		}
		state, err := vm.PowerState(ctx)
		return string(state), err
	})

	step("migrate", func() (interface{}, error) {
		task, err := vm.Migrate(ctx, nil, hosts[1], types.VirtualMachineMovePriorityDefaultPriority, "")
		if err != nil {
			return nil, err
		}
		if err := task.Wait(ctx); err != nil {
			return nil, err
		}
		host, err := vm.HostSystem(ctx)
		if err != nil {
			return nil, err
		}
		back := hosts[0].Reference()
		task, err = vm.Relocate(ctx, types.VirtualMachineRelocateSpec{Host: &back},
			types.VirtualMachineMovePriorityDefaultPriority)
		if err != nil {
			return nil, err
		}
		if err := task.Wait(ctx); err != nil {
			return nil, err
		}
		final, err := vm.HostSystem(ctx)
		if err != nil {
			return nil, err
		}
		return map[string]string{"migrated_to": host.Reference().Value,
			"relocated_to": final.Reference().Value}, nil
	})

	step("snapshots", func() (interface{}, error) {
		task, err := vm.CreateSnapshot(ctx, "golden", "before changes", false, false)
		if err != nil {
			return nil, err
		}
		if err := task.Wait(ctx); err != nil {
			return nil, err
		}
		snap, err := vm.FindSnapshot(ctx, "golden")
		if err != nil {
			return nil, err
		}
		task, err = vm.RevertToSnapshot(ctx, "golden", true)
		if err != nil {
			return nil, err
		}
		if err := task.Wait(ctx); err != nil {
			return nil, err
		}
		return snap.Value, nil
	})

	step("clones", func() (interface{}, error) {
		snap, err := vm.FindSnapshot(ctx, "golden")
		if err != nil {
			return nil, err
		}
		poolRef := pool.Reference()
		full, err := vm.Clone(ctx, folder, "go-full", types.VirtualMachineCloneSpec{
			Location: types.VirtualMachineRelocateSpec{Pool: &poolRef}})
		if err != nil {
			return nil, err
		}
		if err := full.Wait(ctx); err != nil {
			return nil, fmt.Errorf("full clone: %v", err)
		}
		linked, err := vm.Clone(ctx, folder, "go-linked", types.VirtualMachineCloneSpec{
			Location: types.VirtualMachineRelocateSpec{Pool: &poolRef,
				DiskMoveType: string(types.VirtualMachineRelocateDiskMoveOptionsCreateNewChildDiskBacking)},
			Snapshot: snap})
		if err != nil {
			return nil, err
		}
		info, err := linked.WaitForResult(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("linked clone: %v", err)
		}
		clone := object.NewVirtualMachine(c.vim, info.Result.(types.ManagedObjectReference))
		list, err := clone.Device(ctx)
		if err != nil {
			return nil, err
		}
		parent := ""
		for _, d := range list.SelectByType((*types.VirtualDisk)(nil)) {
			backing := d.(*types.VirtualDisk).Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if backing.Parent != nil {
				parent = backing.Parent.FileName
			}
		}
		return map[string]string{"linked_parent": parent}, nil
	})

	step("vm_finder", func() (interface{}, error) {
		vms, err := c.finder.VirtualMachineList(ctx, "go-*")
		if err != nil {
			return nil, err
		}
		// govc find -type m: every VM, with parentVApp unset on all.
		var objs []mo.VirtualMachine
		refs := []types.ManagedObjectReference{}
		paths := []string{}
		for _, v := range vms {
			refs = append(refs, v.Reference())
			paths = append(paths, v.InventoryPath)
		}
		if err := c.pc.Retrieve(ctx, refs, []string{"name", "parentVApp", "summary"}, &objs); err != nil {
			return nil, err
		}
		sort.Strings(paths)
		return paths, nil
	})

	step("events", func() (interface{}, error) {
		manager := event.NewManager(c.vim)
		kinds := []string{}
		var messages []string
		err := manager.Events(ctx, []types.ManagedObjectReference{vm.Reference()}, 50, false, false,
			func(_ types.ManagedObjectReference, events []types.BaseEvent) error {
				for _, e := range events {
					kind := fmt.Sprintf("%T", e)
					kinds = append(kinds, kind[strings.LastIndex(kind, ".")+1:])
					messages = append(messages, e.GetEvent().FullFormattedMessage)
					if _, err := manager.EventCategory(ctx, e); err != nil {
						return err
					}
				}
				return nil
			})
		if err != nil {
			return nil, err
		}
		return map[string]interface{}{"kinds": kinds, "messages": messages}, nil
	})

	step("tasks", func() (interface{}, error) {
		filter := types.TaskFilterSpec{Entity: &types.TaskFilterSpecByEntity{
			Entity: vm.Reference(), Recursion: types.TaskFilterSpecRecursionOptionSelf}}
		res, err := methods.CreateCollectorForTasks(ctx, c.vim, &types.CreateCollectorForTasks{
			This: *c.vim.ServiceContent.TaskManager, Filter: filter})
		if err != nil {
			return nil, err
		}
		collector := res.Returnval
		_, err = methods.RewindCollector(ctx, c.vim, &types.RewindCollector{This: collector})
		if err != nil {
			return nil, err
		}
		read, err := methods.ReadNextTasks(ctx, c.vim, &types.ReadNextTasks{This: collector, MaxCount: 100})
		if err != nil {
			return nil, err
		}
		ids := []string{}
		for _, t := range read.Returnval {
			ids = append(ids, t.DescriptionId+":"+string(t.State))
		}
		_, err = methods.DestroyCollector(ctx, c.vim, &types.DestroyCollector{This: collector})
		return ids, err
	})

	step("perf", func() (interface{}, error) {
		manager := performance.NewManager(c.vim)
		counters, err := manager.CounterInfoByName(ctx)
		if err != nil {
			return nil, err
		}
		if _, ok := counters["cpu.usagemhz.average"]; !ok {
			return nil, fmt.Errorf("no cpu.usagemhz.average counter")
		}
		host, err := vm.HostSystem(ctx)
		if err != nil {
			return nil, err
		}
		spec := types.PerfQuerySpec{MaxSample: 2, IntervalId: 20}
		sample, err := manager.SampleByName(ctx, spec,
			[]string{"cpu.usagemhz.average", "mem.consumed.average"},
			[]types.ManagedObjectReference{host.Reference()})
		if err != nil {
			return nil, err
		}
		series, err := manager.ToMetricSeries(ctx, sample)
		if err != nil {
			return nil, err
		}
		values := map[string][]int64{}
		for _, s := range series {
			for _, v := range s.Value {
				values[v.Name] = v.Value
			}
		}
		var hostObj mo.HostSystem
		if err := c.pc.RetrieveOne(ctx, host.Reference(), []string{"summary.quickStats"}, &hostObj); err != nil {
			return nil, err
		}
		return map[string]interface{}{"values": values,
			"quick_cpu": hostObj.Summary.QuickStats.OverallCpuUsage,
			"quick_mem": hostObj.Summary.QuickStats.OverallMemoryUsage}, nil
	})

	step("custom_fields", func() (interface{}, error) {
		manager, err := object.GetCustomFieldsManager(c.vim)
		if err != nil {
			return nil, err
		}
		field, err := manager.Add(ctx, "owner", "VirtualMachine", nil, nil)
		if err != nil {
			return nil, err
		}
		if err := manager.Set(ctx, vm.Reference(), field.Key, "go-team"); err != nil {
			return nil, err
		}
		key, err := manager.FindKey(ctx, "owner")
		if err != nil {
			return nil, err
		}
		var props mo.VirtualMachine
		if err := c.pc.RetrieveOne(ctx, vm.Reference(), []string{"customValue"}, &props); err != nil {
			return nil, err
		}
		values := map[int32]string{}
		for _, v := range props.CustomValue {
			values[v.GetCustomFieldValue().Key] = v.(*types.CustomFieldStringValue).Value
		}
		return map[string]interface{}{"key": key, "value": values[key]}, nil
	})

	step("options_licenses_roles", func() (interface{}, error) {
		options, err := object.NewOptionManager(c.vim, *c.vim.ServiceContent.Setting).Query(ctx, "event.")
		if err != nil {
			return nil, err
		}
		licenses, err := license.NewManager(c.vim).List(ctx)
		if err != nil {
			return nil, err
		}
		roles, err := object.NewAuthorizationManager(c.vim).RoleList(ctx)
		if err != nil {
			return nil, err
		}
		keys := []string{}
		for _, o := range options {
			keys = append(keys, o.GetOptionValue().Key)
		}
		return map[string]interface{}{"options": keys, "licenses": len(licenses),
			"admin": roles.ByName("Admin") != nil}, nil
	})

	step("list_view_wait", func() (interface{}, error) {
		lv, err := view.NewManager(c.vim).CreateListView(ctx, []types.ManagedObjectReference{vm.Reference()})
		if err != nil {
			return nil, err
		}
		defer lv.Destroy(ctx)
		var listed mo.ListView
		if err := c.pc.RetrieveOne(ctx, lv.Reference(), []string{"view"}, &listed); err != nil {
			return nil, err
		}
		// Power off, and see it through the property collector's updates.
		task, err := vm.PowerOff(ctx)
		if err != nil {
			return nil, err
		}
		state := ""
		waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		err = property.Wait(waitCtx, c.pc, vm.Reference(), []string{"runtime.powerState"},
			func(changes []types.PropertyChange) bool {
				for _, ch := range changes {
					if ch.Val != nil {
						state = string(ch.Val.(types.VirtualMachinePowerState))
					}
				}
				return state == "poweredOff"
			})
		if err != nil {
			return nil, err
		}
		return map[string]interface{}{"listed": len(listed.View), "state": state,
			"task": task.Reference().Type}, nil
	})

	step("session_relogin", func() (interface{}, error) {
		manager := session.NewManager(c.vim)
		active, err := manager.UserSession(ctx)
		if err != nil || active == nil {
			return nil, fmt.Errorf("no session before expiry: %v", err)
		}
		if err := c.control("expire_sessions"); err != nil {
			return nil, err
		}
		// What keep-alive handlers do: is the session alive? If not, log in.
		gone, err := manager.UserSession(ctx)
		if err != nil {
			return nil, fmt.Errorf("UserSession after expiry: %v", err)
		}
		if gone != nil {
			return nil, fmt.Errorf("the session survived its expiry")
		}
		if err := manager.Login(ctx, c.url.User); err != nil {
			return nil, err
		}
		back, err := manager.UserSession(ctx)
		if err != nil || back == nil {
			return nil, fmt.Errorf("no session after login: %v", err)
		}
		// A keep-alive round tripper on the new session.
		c.vim.RoundTripper = session.KeepAlive(c.vim.RoundTripper, time.Second)
		time.Sleep(1500 * time.Millisecond)
		still, err := manager.UserSession(ctx)
		if err != nil || still == nil {
			return nil, fmt.Errorf("session lost under keep-alive: %v", err)
		}
		return map[string]bool{"relogged": back.Key != active.Key}, nil
	})

	step("destroy", func() (interface{}, error) {
		destroyed := []string{}
		vms, err := c.finder.VirtualMachineList(ctx, "go-*")
		if err != nil {
			return nil, err
		}
		// go-vm last: the linked clone's parent disk is go-vm's.
		sort.Slice(vms, func(i, j int) bool { return vms[j].Name() == "go-vm" })
		for _, v := range vms {
			if state, _ := v.PowerState(ctx); state == types.VirtualMachinePowerStatePoweredOn {
				if t, err := v.PowerOff(ctx); err == nil {
					_ = t.Wait(ctx)
				}
			}
			task, err := v.Destroy(ctx)
			if err != nil {
				return nil, err
			}
			if err := task.Wait(ctx); err != nil {
				return nil, fmt.Errorf("%s: %v", v.Name(), err)
			}
			destroyed = append(destroyed, v.Name())
		}
		left, _ := c.finder.VirtualMachineList(ctx, "go-*")
		return map[string]interface{}{"destroyed": destroyed, "left": len(left)}, nil
	})
}
