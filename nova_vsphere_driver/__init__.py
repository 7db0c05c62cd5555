"""nova-vsphere-driver: each vSphere cluster one Nova hypervisor, our DRS inside."""

#: The hypervisor type this driver reports for its compute nodes; scheduler
#: filters recognise its nodes by it.
HYPERVISOR_TYPE = "VMware vCenter Server"
