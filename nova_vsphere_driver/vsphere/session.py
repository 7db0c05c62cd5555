"""One oslo.vmware session to vCenter, shared by every thread of the driver."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from oslo_log import log as logging
from oslo_vmware import api as vmware_api
from oslo_vmware import exceptions as vexc
from oslo_vmware import pbm as oslo_pbm
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere import soap_text

LOG = logging.getLogger(__name__)
# suds warns "attribute (type) type, not-found" for every managed object
# reference inside an xsd:anyType property value, which is how vCenter
# sends them: noise in every nova-compute log, never a problem.
logging.getLogger("suds.umx.typed").logger.setLevel(logging.ERROR)
# suds' DEBUG output walks every SOAP body it builds -- Login's password
# included. Credentials must never reach a log, whatever the log levels.
logging.getLogger("suds").logger.setLevel(logging.INFO)


def _make_suds_replies_thread_safe() -> None:
    """suds decodes every reply of a port through one shared MultiRef object.

    ``MultiRef.process`` keeps its working lists on that object and ends with
    ``body.children = self.nodes``: two threads decoding replies at once (the
    driver's one session, Nova's native-threading mode) can swap replies, so
    one call returns another call's result (seen with real Nova's concurrent
    deletes: a RetrievePropertiesEx reply without its objects; in
    tests/nova/test_threading.py: one host's name read for another, one
    cluster's hosts for the other's). Give each reply its own MultiRef.
    """
    from suds.bindings import multiref

    process = multiref.MultiRef.process
    if getattr(process, "_per_call", False):
        return

    def per_call_process(self, body):
        return process(multiref.MultiRef(), body)

    per_call_process._per_call = True
    multiref.MultiRef.process = per_call_process


_make_suds_replies_thread_safe()


#: Logins one call may need (the session can expire again right after one).
MAX_RELOGINS = 2
#: Consecutive failed reads of a task's state before waiting on it fails.
TASK_POLL_ATTEMPTS = 3


class TaskTimeout(Exception):
    """A vCenter task did not finish within the configured bound."""


class StableMoRef:
    """A managed object reference that finds its object again when vCenter forgets it.

    A VM keeps its instance UUID for life, but its reference changes when it
    is unregistered and registered again (an operator's repair, a restore,
    HA). A call through the session that fails with ManagedObjectNotFound
    naming this reference calls ``refind`` once, takes the new reference and
    repeats; holders (the driver's cache) keep this object, so every later
    call uses the new reference too. ``refind`` returning None means the
    object is really gone: the fault stands. (Nova's in-tree driver does the
    same with its StableMoRefProxy.)

    Attributes of the current reference (``value``, ``_type``) read through,
    so ``vim_util.get_moref_value`` works on it; the session hands vCenter
    the current plain reference.
    """

    __slots__ = ("_ref", "_refind", "_lock")

    def __init__(self, ref: Any, refind: Callable[[], Any]) -> None:
        self._ref = ref
        self._refind = refind
        self._lock = threading.Lock()

    @property
    def ref(self) -> Any:
        """The current plain reference."""
        return self._ref

    @staticmethod
    def plain(ref: Any) -> Any:
        """The plain reference vCenter understands, whether ``ref`` is stable or not."""
        return ref.ref if isinstance(ref, StableMoRef) else ref

    def __getattr__(self, name: str) -> Any:
        # Only for what the reference itself has: never protocols (copy,
        # pickle) nor this object's own slots before they are set.
        if name.startswith("__") or name in StableMoRef.__slots__:
            raise AttributeError(name)
        return getattr(self._ref, name)

    def __repr__(self) -> str:
        return f"StableMoRef({vim_util.get_moref_type(self._ref)}:" \
            f"{vim_util.get_moref_value(self._ref)})"

    def recover(self, lost: str) -> bool:
        """Find the object again after vCenter said it does not know ``lost``.

        True when the reference now differs from ``lost`` (also when another
        thread found it again meanwhile): the call may be repeated.
        """
        with self._lock:
            if vim_util.get_moref_value(self._ref) != lost:
                return True
            found = self._refind()
            if isinstance(found, StableMoRef):
                found = found.ref
            if found is None or vim_util.get_moref_value(found) == lost:
                return False
            LOG.info("vCenter no longer knows %s %s; found it again as %s",
                     vim_util.get_moref_type(self._ref), lost, vim_util.get_moref_value(found))
            self._ref = found
            return True


class CallRefused(vexc.VimFaultException):
    """vCenter answered a call with SecurityError or NotAuthenticated on a valid session.

    oslo.vmware reports both faults as NotAuthenticated, which usually means
    "log in again"; when the session is still valid, they mean that vCenter
    refused this call (a missing privilege, a vCenter in trouble) -- an
    error, never an empty answer. ``fault_list`` holds the fault's own name.
    """

    def __init__(self, method: str, fault: str, cause: Exception | None) -> None:
        # suds' WebFault carries the fault string; a pyVmomi fault its msg.
        reason = (getattr(getattr(cause, "fault", None), "faultstring", None)
                  or getattr(cause, "msg", None) or cause)
        super().__init__([fault], f"vCenter refused {method} with {fault} although the "
                         f"session is valid (check the privileges of the vCenter account): "
                         f"{reason}", cause)
        self.method = method

    @property
    def description(self) -> str:
        return str(self.msg)  # the cause and fault are in the message already


def _fault_type(exc: vexc.VimFaultException) -> str:
    """The vim fault type vCenter sent, from the SOAP fault oslo.vmware wrapped.

    oslo.vmware names a SecurityError NotAuthenticated; the fault's detail
    still says which it was.
    """
    document = getattr(exc.cause, "document", None)
    detail = document.childAtPath("/Envelope/Body/Fault/detail") if document else None
    for fault in detail.getChildren() if detail else ():
        kind = fault.get("type") or fault.name
        if kind:
            return kind.split(":")[-1]
    return vexc.NOT_AUTHENTICATED


def _is_empty_answer(exc: vexc.VimFaultException) -> bool:
    """oslo.vmware's stand-in for an empty RetrievePropertiesEx answer.

    It raises NotAuthenticated for it (an empty answer is also what ESX
    sends to an expired session), without a cause; a SOAP fault always
    comes with the suds WebFault as its cause.
    """
    return exc.cause is None and list(exc.fault_list or []) == [vexc.NOT_AUTHENTICATED]


class _SoapCalls:
    """The vim methods as the session and oslo.vmware's helpers call them.

    Every attribute is the oslo.vmware Vim's, except RetrievePropertiesEx:
    an empty answer on a valid session comes back as a RetrieveResult with
    no objects (what vCenter means by it), where oslo.vmware raises
    NotAuthenticated; on an expired session the fault goes on to the
    session's re-login.
    """

    def __init__(self, session: VSphereSession) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session._api.vim, name)

    def RetrievePropertiesEx(self, collector: Any, **kwargs: Any) -> Any:  # noqa: N802
        api = self._session._api
        session_before = api._session_id
        try:
            return api.vim.RetrievePropertiesEx(collector, **kwargs)
        except vexc.VimFaultException as exc:
            if not _is_empty_answer(exc):
                raise
            if api._session_id != session_before or not api.is_current_session_active():
                raise
            empty = api.vim.client.factory.create("ns0:RetrieveResult")
            empty.objects = []
            return empty


class VSphereSession:
    """Thin wrapper over :class:`oslo_vmware.api.VMwareAPISession`.

    oslo.vmware re-logs in on NotAuthenticated and retries connection
    errors; this wrapper tells a refused call from an expired session and
    an empty answer from a fault, sends every text exactly
    (:mod:`~nova_vsphere_driver.vsphere.soap_text`), finds lost references
    again (:class:`StableMoRef`), and bounds task waits (oslo.vmware's waits
    forever).
    """

    def __init__(self, host: str, port: int, username: str, password: str, *,
                 scheme: str = "https", ca_file: str | None = None, insecure: bool = False,
                 wsdl_location: str | None = None, api_retry_count: int = 10,
                 task_poll_interval: float = 0.5, pool_size: int = 10,
                 api_timeout: float = 300.0) -> None:
        self.host = host
        self.port = port
        self.scheme = scheme
        #: TLS settings and pool size, for other clients on this login (vim_client).
        self.ca_file = ca_file
        self.insecure = insecure
        self.pool_size = pool_size
        self.task_poll_interval = task_poll_interval
        self.api_timeout = api_timeout
        self.api_retry_count = api_retry_count
        self._api = vmware_api.VMwareAPISession(
            host, username, password, api_retry_count, task_poll_interval,
            scheme=scheme, port=port, wsdl_loc=wsdl_location, cacert=ca_file,
            insecure=insecure, pool_size=pool_size, create_session=False,
            # Bounds every HTTP exchange: a hung vCenter must not hang a call.
            connection_timeout=api_timeout)
        self._calls = _SoapCalls(self)
        self._probe()
        # Every request of this session's client escaped completely (not suds'
        # module-wide encoder: other suds users in the process keep theirs).
        soap_text.install(self._api.vim.client)
        # Reachable and trusted: log in (bad credentials raise InvalidLogin).
        try:
            self._api._create_session()
        except vexc.VimException as exc:
            if isinstance(exc.cause, soap_text.UnsendableText):
                raise exc.cause from None  # names the element, never the password
            raise


    def _probe(self) -> None:
        """Reach vCenter once before logging in, with bounded retries.

        oslo.vmware retries a session creation that meets a connection error
        forever; an unreachable host, a bad CA or a TLS failure must instead
        be an error that names itself.
        """
        attempts = self.api_retry_count + 1
        for attempt in range(1, attempts + 1):
            try:
                self._api.vim.retrieve_service_content()
                return
            except vexc.VimFaultException:
                return  # vCenter answered: it is reachable
            except Exception as exc:  # suds/requests errors while fetching the WSDL too
                if attempt == attempts:
                    if isinstance(exc, vexc.VMwareDriverException):
                        raise
                    raise vexc.VimConnectionException(
                        f"cannot reach vCenter at {self.host}:{self.port}: {exc}", exc) from exc
                LOG.warning("vCenter %s:%s not reachable (%s); retry %d of %d", self.host,
                            self.port, exc, attempt, attempts - 1)
                time.sleep(min(2.0 * attempt, 10.0))

    # -- basics ---------------------------------------------------------------

    @property
    def vim(self):
        return self._api.vim

    @property
    def content(self):
        return self._api.vim.service_content

    def factory(self, type_name: str):
        """A suds object of vim type ``type_name`` (e.g. ``VirtualMachineConfigSpec``)."""
        return self._api.vim.client.factory.create("ns0:" + type_name)

    # -- the storage policy service (SPBM) ---------------------------------------

    def enable_storage_policies(self, wsdl_location: str | None = None) -> str:
        """Talk to vCenter's storage policy service too; returns the WSDL location used.

        Without ``wsdl_location``, the SPBM WSDL oslo.vmware ships for this
        vCenter's version. VMwareDriverConfigurationException when it has
        none for it.
        """
        location = wsdl_location or oslo_pbm.get_pbm_wsdl_location(
            self.content.about.version)
        if not location:
            raise vexc.VMwareDriverConfigurationException(
                f"oslo.vmware has no storage policy WSDL for vCenter "
                f"{self.content.about.version}")
        self._api.pbm_wsdl_loc_set(location)
        return location

    @property
    def pbm(self):
        """oslo.vmware's SPBM client (its cookie follows the vim25 session's logins)."""
        return self._api.pbm

    def invoke_api(self, module: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """oslo.vmware's session interface, with this session's retries and re-logins: the
        helpers of ``oslo_vmware.pbm`` take this session as theirs."""
        return self._invoke_api(module, method, *args, **kwargs)

    def _invoke_api(self, module: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """One vCenter call; :class:`StableMoRef` arguments vCenter lost are found again."""
        stable = [a for a in (*args, *kwargs.values()) if isinstance(a, StableMoRef)]
        if not stable:
            return self._invoke_once(module, method, *args, **kwargs)
        plain = StableMoRef.plain
        recoveries = 0
        while True:
            # What this attempt sends: another thread may find a reference
            # again while the call is under way.
            sent = [(r, vim_util.get_moref_value(r.ref)) for r in stable]
            try:
                return self._invoke_once(module, method, *(plain(a) for a in args),
                                         **{k: plain(v) for k, v in kwargs.items()})
            except vexc.ManagedObjectNotFoundException as exc:
                lost = str((exc.details or {}).get("obj") or "")
                holder = next((r for r, value in sent if value == lost), None)
                # Each argument is found again at most once per call.
                if holder is None or recoveries >= len(stable) or not holder.recover(lost):
                    raise
                recoveries += 1

    def _invoke_once(self, module: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """One vCenter call, with re-login and bounded retries.

        Like oslo.vmware's ``invoke_api``, but (1) after logging in again it
        repeats the call at once, where oslo.vmware first sleeps 10 s -- every
        call in flight when a session expires would stall; (2) when the
        session was renewed by another thread meanwhile, it repeats the call;
        (3) a SecurityError or NotAuthenticated fault on a session that is
        still valid is raised (:class:`CallRefused`), where oslo.vmware
        returns an empty result that reads as "no VMs, no capacity"; (4)
        connection errors are retried ``api_retry_count`` times with short,
        growing pauses and never turn into oslo.vmware's endless login
        retries. Logging in is still oslo.vmware's own session creation.
        """
        relogins = failures = 0
        while True:
            session_before = self._api._session_id
            try:
                return getattr(module, method)(*args, **kwargs)
            except vexc.VimFaultException as exc:
                faults = exc.fault_list or []
                if vexc.NOT_AUTHENTICATED not in faults:
                    fault_class = vexc.get_fault_class(faults[0]) if faults else None
                    if fault_class is not None:
                        raise fault_class(str(exc), details=exc.details) from exc
                    raise
                # NotAuthenticated: the session expired, another thread logged
                # in meanwhile, or (the session being valid) a refusal.
                if relogins >= MAX_RELOGINS:
                    raise
                relogins += 1
                if self._api._session_id != session_before:
                    LOG.debug("%s raced with a re-login; calling it again", method)
                    continue
                if self._api.is_current_session_active():
                    if self._api._session_id == session_before:
                        raise CallRefused(method, _fault_type(exc), exc.cause) from exc
                    continue
                LOG.info("vCenter session expired; logging in again")
                self._api._create_session()
            except vexc.VimException as exc:
                if isinstance(exc.cause, soap_text.UnsendableText):
                    # Refused before anything was sent: say what, not "Exception in X".
                    raise exc.cause from None
                raise
            except (vexc.VimConnectionException, vexc.VimSessionOverLoadException) as exc:
                failures += 1
                if failures > self.api_retry_count:
                    raise
                pause = min(0.5 * 2 ** (failures - 1), 10.0)
                LOG.warning("vCenter call %s failed (%s); retry %d of %d in %.1f s", method,
                            exc, failures, self.api_retry_count, pause)
                time.sleep(pause)

    def invoke(self, method: str, moref: Any, **kwargs: Any) -> Any:
        """Call a vim method on ``moref``; faults become oslo.vmware exceptions."""
        return self._invoke_api(self._calls, method, moref, **kwargs)

    def call(self, helper: str, *args: Any, **kwargs: Any) -> Any:
        """Call an ``oslo_vmware.vim_util`` helper with the session's retries."""
        return self._invoke_api(vim_util, helper, self._calls, *args, **kwargs)

    def logout(self) -> None:
        self._api.logout()

    def renew_expired(self, stale_cookie: str) -> bool:
        """Log in again after a call made with ``stale_cookie`` met NotAuthenticated.

        For clients sharing this login (vim_client): True when the call may
        be made again (another thread logged in meanwhile, or this one did),
        False when the session is valid after all -- vCenter refused the
        call itself.
        """
        if self.cookie_header != stale_cookie:
            return True
        if self._api.is_current_session_active():
            return False
        LOG.info("vCenter session expired; logging in again")
        self._api._create_session()
        return True

    @property
    def cookie_header(self) -> str:
        """The session cookie, for datastore HTTP transfers."""
        cookies = self._api.vim.client.cookiejar
        for cookie in cookies:
            if cookie.name == "vmware_soap_session":
                return f"{cookie.name}={cookie.value}"
        raise vexc.VimException("no vCenter session cookie")

    # -- tasks ------------------------------------------------------------------

    def wait_for_task(self, task: Any, timeout: float | None = None) -> Any:
        """Poll ``task`` until it ends; returns its info or raises its fault.

        Raises :class:`TaskTimeout` after ``timeout`` (default: the
        configured ``api_timeout``) so that no caller waits forever on a
        stuck vCenter.
        """
        deadline = time.monotonic() + (timeout if timeout is not None else self.api_timeout)
        failed_polls = 0
        while True:
            try:
                info = self.call("get_object_property", task, "info", skip_op_id=True)
            except vexc.ManagedObjectNotFoundException:
                raise
            except vexc.VimException as exc:
                # A failed read is not the task's outcome: the task runs on
                # in vCenter. Giving up at once would leave a caller unable
                # to clean up what the task then makes (a CreateVM_Task's VM).
                failed_polls += 1
                if failed_polls >= TASK_POLL_ATTEMPTS or time.monotonic() >= deadline:
                    raise
                LOG.warning("Reading task %s failed (%s); polling again",
                            vim_util.get_moref_value(task), exc)
                time.sleep(self.task_poll_interval)
                continue
            failed_polls = 0
            if info is None:
                # An empty answer for an existing task (a vanished one faults
                # with ManagedObjectNotFound): nothing to wait on, and no
                # reason to believe it succeeded.
                raise vexc.VimException(f"vCenter returned no info for task "
                                        f"{vim_util.get_moref_value(task)}")
            if info.state == "success":
                return info
            if info.state == "error":
                raise vexc.translate_fault(info.error)
            if time.monotonic() >= deadline:
                raise TaskTimeout(f"task {vim_util.get_moref_value(task)} "
                                  f"({getattr(info, 'name', '?')}) still {info.state} after "
                                  f"{timeout if timeout is not None else self.api_timeout:.0f} s")
            time.sleep(self.task_poll_interval)

    def delete_datastore_file(self, path: str, dc_ref: Any) -> bool:
        """Delete a datastore file or folder (``[ds] path``); False if it was not there."""
        try:
            self.run_task("DeleteDatastoreFile_Task", self.content.fileManager, name=path,
                          datacenter=dc_ref)
        except vexc.FileNotFoundException:
            return False
        return True

    def run_task(self, method: str, moref: Any, timeout: float | None = None,
                 on_start: Callable[[Any], None] | None = None, **kwargs) -> Any:
        """Start a ``*_Task`` method and wait for it; returns the task result.

        A task that outlives the timeout is cancelled when vCenter allows it
        (migrations, clones), so that it does not finish behind our back.
        ``on_start`` gets the task's reference before the wait: a caller
        whose wait fails can still learn how the task ended.
        """
        task = self.invoke(method, moref, **kwargs)
        if on_start is not None:
            on_start(task)
        try:
            return getattr(self.wait_for_task(task, timeout), "result", None)
        except TaskTimeout:
            try:
                self.invoke("CancelTask", task)
                LOG.warning("Cancelled %s after it timed out", method)
            except vexc.VimException as exc:
                LOG.warning("%s timed out and cannot be cancelled (%s); it may still "
                            "complete in vCenter", method, exc)
            raise
