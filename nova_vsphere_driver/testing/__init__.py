"""Test support: real Nova in-process against the simulator, and Nova's fake Glance.

Used by the tests and by ``nova-vsphere-demo``; nothing of the driver imports
it. Importing any of its modules has no side effect. Nova chooses its
concurrency mode (native threads or eventlet) once, before Nova or
oslo.vmware is imported: call :func:`.nova_env.prepare` first, then import
:mod:`.nova_stack` (:class:`~.nova_stack.NovaStack`) or :mod:`.glance`.
"""
