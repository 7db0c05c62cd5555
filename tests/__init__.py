# Nova's concurrency mode is fixed at import time, and oslo.vmware's import
# fixes oslo.service's backend: both must happen after nova.monkey_patch.
# Tests run in native-threading mode unless OS_NOVA_DISABLE_EVENTLET_PATCHING
# says otherwise (tox -e py3-eventlet sets it to 0).
import os

os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")
try:
    from nova import monkey_patch
except ImportError:  # the simulator's tests run without Nova installed
    pass
else:
    monkey_patch.patch()
    from nova import objects

    objects.register_all()
