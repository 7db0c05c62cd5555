"""Console scripts: ``nova-vsphere-demo`` (with its charts) and ``nova-vsphere-drs``."""
