"""Before anything imports Nova: is it installed, and which concurrency mode?

Importing this module imports nothing from Nova, so callers can check for it
and print a useful message instead of a traceback.
"""

from __future__ import annotations

import importlib.util
import os

INSTALL_HINT = "pip install 'nova-vsphere-driver[nova]'"

#: Modules the in-process Nova stack needs: Nova and placement, and what their
#: functional-test fixtures import (Nova ships the fixtures, not their
#: test-only requirements).
REQUIRED_MODULES = {
    # Not "nova": this project's loading shim (nova/virt/vsphere) makes "nova"
    # an importable namespace package even where Nova is not installed.
    "nova.compute": "nova",
    "placement": "openstack-placement",
    "fixtures": "fixtures",
    "wsgi_intercept": "wsgi-intercept",
    "testtools": "testtools",
    "testscenarios": "testscenarios",
    "testresources": "testresources",
}


class NovaNotAvailable(ImportError):
    """Nova (or a module its test fixtures need) is not installed."""


def missing_modules() -> list[str]:
    """Distribution names of what is missing, in a stable order."""
    missing = []
    for module, dist in REQUIRED_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dist)
    return missing


def prepare() -> None:
    """Check Nova is there and fix its concurrency mode (before oslo.vmware is imported).

    Native threading unless OS_NOVA_DISABLE_EVENTLET_PATCHING says otherwise
    (``0`` selects Nova's deprecated eventlet mode); that must be decided
    before the first import of ``nova.monkey_patch``'s callers.
    """
    missing = missing_modules()
    if missing:
        raise NovaNotAvailable(
            f"the in-process Nova stack needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}")
    os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")
    from nova import monkey_patch

    monkey_patch.patch()


def eventlet_mode() -> bool:
    """Whether Nova runs on eventlet in this process (after :func:`prepare`)."""
    from nova import monkey_patch

    return monkey_patch.is_patched()
