"""Nova's instance and host operations, one concern per module.

Each module holds one group of ComputeDriver operations as a class that the
driver builds once in ``init_host`` with exactly the collaborators it needs
(the shared clients of :mod:`nova_vsphere_driver.services`, or parts of
them, and other operation objects); the driver's methods only delegate. No
module here imports the driver or is handed it.
"""
