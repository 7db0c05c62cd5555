# The loading shim: Nova imports "nova.virt." + compute_driver, so
# "compute_driver = vsphere.VSphereDriver" in nova.conf lands here.
# Only this package is shipped under nova/; Nova's own files are untouched.
from nova_vsphere_driver.driver import VSphereDriver

__all__ = ["VSphereDriver"]
