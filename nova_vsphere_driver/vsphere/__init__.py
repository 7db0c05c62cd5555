"""The vCenter client layer: one oslo.vmware session, reads, tasks, VM operations."""
