"""vim25 SOAP codec for the simulator, built on pyVmomi's own type system.

Requests are decoded with pyVmomi's ``SoapDeserializer`` one parameter at a
time (array parameters item by item: a list-typed deserializer would swallow
the sibling elements that follow it), and responses and faults are encoded
with pyVmomi's ``SoapSerializer``, so the wire format is VMware's.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import re
import threading
from typing import Any
from xml.parsers.expat import ErrorString, ExpatError, ParserCreate

from pyVmomi import Iso8601, SoapAdapter, VmomiSupport, vmodl

#: The API version this simulator implements: the newest for which
#: oslo.vmware ships type schemas, so suds and pyVmomi agree on the types.
API_VERSION = "8.0.0.0"
VERSION = VmomiSupport.GetVersionFromVersionUri("urn:vim25/" + API_VERSION)
VIM_NS = "urn:vim25"
#: The storage policy (SPBM) API, served on /pbm: the version of oslo.vmware's 8.0 schemas.
PBM_NS = "urn:pbm"
PBM_VERSION = "pbm.version.v8_0_0_0"

_NS_SEP = " "
_SOAPENV = "http://schemas.xmlsoap.org/soap/envelope/"
_ENVELOPE_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n<soapenv:Body>\n'
)
_ENVELOPE_TAIL = "\n</soapenv:Body>\n</soapenv:Envelope>"
_NS_MAP = {VIM_NS: "", SoapAdapter.XMLNS_XSI: "xsi", SoapAdapter.XMLNS_XSD: "xsd"}
#: In PBM answers vim25 types (references, faults) keep their own namespace.
_PBM_NS_MAP = {PBM_NS: "", VIM_NS: "vim25", SoapAdapter.XMLNS_XSI: "xsi",
               SoapAdapter.XMLNS_XSD: "xsd"}


def _wire(namespace: str) -> tuple[str, dict[str, str]]:
    """(pyVmomi version, namespace prefixes) to write values of ``namespace``'s API in."""
    return (PBM_VERSION, _PBM_NS_MAP) if namespace == PBM_NS else (VERSION, _NS_MAP)


_FETCH = VmomiSupport.Object(
    name="Fetch", wsdlName="Fetch", typeName="vmodl.ManagedObject", version=VERSION,
    params=(VmomiSupport.Object(name="prop", type=str, version=VERSION, flags=0),),
    isTask=False, resultFlags=0, result=object, methodResult=object, faults=[],
)


#: How deep a request may nest its elements. A disk's backing with the
#: longest parent chain vCenter allows (255 delta disks) fits.
MAX_NESTING = 300

_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*\Z")
_RANGES = {int: 32, VmomiSupport.GetVmodlType("long"): 64,
           VmomiSupport.GetVmodlType("short"): 16, VmomiSupport.GetVmodlType("byte"): 8}
_XSD_NAMES = {bool: "boolean", str: "string"}


class SoapDecodeError(Exception):
    """The request is not a well-formed vim25 SOAP call; the message is vCenter's wording."""


def _type_name(vmodl_type: Any) -> str:
    """The vim25 (wsdl) name of a type, as vCenter's parser messages name it."""
    if vmodl_type in _XSD_NAMES:
        return _XSD_NAMES[vmodl_type]
    try:
        return VmomiSupport.GetWsdlName(vmodl_type)
    except (KeyError, AttributeError, TypeError):
        return getattr(vmodl_type, "__name__", str(vmodl_type))


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


class _ParamDeserializer(SoapAdapter.SoapDeserializer):
    """pyVmomi's deserializer for one parameter, failing in vCenter's words.

    vCenter's parser refuses a value outside the lexical space of its xsd
    type (``"1024.0"`` for an ``xsd:long``: 'Cannot parse "1024.0" as a long
    value'), an element its type does not declare ('Unexpected element tag
    "x" seen') and nesting beyond :data:`MAX_NESTING`; each message goes on
    with where in the request that was. pyVmomi's own failures are Python
    exceptions; here they become :class:`SoapDecodeError` with that text.
    """

    def __init__(self, method_name: str, depth: int, version: str = VERSION) -> None:
        super().__init__(version=version)
        self.method_name = method_name
        self.base_depth = depth
        #: The element names of the values on ``self.stack`` (plus the one
        #: being closed, until it is).
        self.tags: list[str] = []

    def StartElementHandler(self, tag: str, attr: dict) -> None:  # noqa: N802
        name = tag.rpartition(_NS_SEP)[2]
        if self.base_depth + len(self.tags) >= MAX_NESTING:
            raise SoapDecodeError(self._where(
                f"The request nests its elements more than {MAX_NESTING} levels deep"))
        try:
            super().StartElementHandler(tag, attr)
        except (AttributeError, KeyError, TypeError) as exc:
            named = attr.get(SoapAdapter.XSI_TYPE) or attr.get("type")
            if isinstance(exc, KeyError) and exc.args == ("type",):
                problem = f'Required attribute "type" is missing from element "{name}"'
            elif isinstance(exc, AttributeError) and str(exc) == name:
                problem = f'Unexpected element tag "{name}" seen'
            elif named:
                problem = f'Unable to resolve WSDL type name "{_clip(named)}"'
            else:
                problem = f'Unable to parse element "{name}"'
            raise SoapDecodeError(self._where(problem)) from None
        self.tags.append(name)

    def EndElementHandler(self, tag: str) -> None:  # noqa: N802
        stack = getattr(self, "stack", None)
        value_type = stack[-1] if stack and isinstance(stack[-1], type) else None
        if value_type in _RANGES:
            self._check_integer(value_type)
        elif value_type is VmomiSupport.binary and not _is_base64(self.data):
            # (pyVmomi's decoding drops what is not base64 without a word.)
            vtype = _type_name(value_type)
            raise SoapDecodeError(self._where(
                f'Cannot parse "{_clip(self.data)}" as {_article(vtype)} {vtype} value',
                value_type=vtype))
        try:
            super().EndElementHandler(tag)
        except (AttributeError, KeyError, TypeError, ValueError):
            vtype = _type_name(value_type) if value_type is not None else "unknown"
            raise SoapDecodeError(self._where(
                f'Cannot parse "{_clip(self.data)}" as {_article(vtype)} {vtype} value',
                value_type=vtype)) from None
        if self.tags:
            self.tags.pop()

    def _check_integer(self, int_type: type) -> None:
        """xsd integers: optional sign and digits (no "1024.0", no "1e3"), within range."""
        half = 1 << (_RANGES[int_type] - 1)
        data = self.data
        if _INTEGER.match(data) is None or not -half <= int(data) < half:
            vtype = _type_name(int_type)
            raise SoapDecodeError(self._where(
                f'Cannot parse "{_clip(data)}" as {_article(vtype)} {vtype} value',
                value_type=vtype))

    def _where(self, problem: str, value_type: str | None = None) -> str:
        """``problem``, then where it is in the request, innermost first (as vCenter words it)."""
        lines = [problem]
        if value_type is not None:
            lines.append(f"while parsing serialized value of type {value_type}")
        stack = list(getattr(self, "stack", None) or ())
        for depth in range(len(stack) - 1, -1, -1):
            holder = stack[depth]
            if not isinstance(holder, VmomiSupport.DataObject):
                continue
            if depth + 1 < len(self.tags):
                child = self.tags[depth + 1]
                try:
                    declared = _type_name(holder._GetPropertyInfo(child).type)
                except AttributeError:
                    declared = "unknown"
                lines.append(f'while parsing property "{child}" of static type {declared}')
            lines.append("while parsing serialized DataObject of type "
                         f"{VmomiSupport.GetVmodlName(type(holder))}")
        lines += [f"while parsing call information for method {self.method_name}",
                  "while parsing SOAP body", "while parsing SOAP envelope"]
        return "\n\n".join(lines)


def _is_base64(text: str) -> bool:
    """Is ``text`` in xsd:base64Binary's lexical space?"""
    compact = "".join(text.split())
    if not compact:
        return True
    if len(compact) % 4:
        return False
    body = compact[:-4]
    return re.fullmatch(r"[A-Za-z0-9+/]*", body) is not None and \
        re.fullmatch(r"[A-Za-z0-9+/]{2}(?:==|[A-Za-z0-9+/]=|[A-Za-z0-9+/]{2})",
                     compact[-4:]) is not None


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


@dataclasses.dataclass
class SoapCall:
    """One decoded SOAP request."""

    method: Any  # pyVmomi managed method info
    this: Any  # pyVmomi ManagedObject stub for ``_this``
    args: dict[str, Any]
    #: The vCenter session cookie a PBM call carries in its SOAP header.
    vc_session_cookie: str | None = None

    @property
    def name(self) -> str:
        return self.method.wsdlName

    @property
    def namespace(self) -> str:
        """The API the method belongs to: ``urn:vim25`` or ``urn:pbm``."""
        return method_namespace(self.method)


def method_namespace(method) -> str:
    return VmomiSupport.GetWsdlNamespace(method.version)


def _method_info(namespace: str, name: str):
    """The method info of call element ``name`` in ``namespace``, or None if unknown."""
    if name == "Fetch":
        # pyVmomi's lazy property reads call a private method that is not
        # in the type registry: Fetch(prop) -> the property's value.
        return _FETCH
    try:
        return VmomiSupport.GetWsdlMethod(namespace, name).info
    except KeyError:
        return None


class _RequestDecoder(SoapAdapter.ExpatDeserializerNSHandlers):
    """Expat handlers that walk Envelope/Body/<Method>/<param>...

    Each parameter element is handed to a fresh pyVmomi ``SoapDeserializer``
    which restores our handlers when the element closes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.in_body = False
        self.method = None
        self.this = None
        self.args: dict[str, Any] = {}
        self.parser = ParserCreate(namespace_separator=_NS_SEP)
        self.parser.buffer_text = True
        self._pending: tuple[str | None, bool] | None = None
        self._deser: SoapAdapter.SoapDeserializer | None = None
        #: The text of the vcSessionCookie header block (PBM calls), when inside it.
        self._cookie: list[str] | None = None
        self.vc_session_cookie: str | None = None
        SoapAdapter.SetHandlers(self.parser, SoapAdapter.GetHandlers(self))
        # SOAP 1.1 (section 3): "A SOAP message MUST NOT contain a Document
        # Type Declaration". Refusing it refuses entity tricks too (billion
        # laughs, external entities) before expat expands anything.
        self.parser.StartDoctypeDeclHandler = self._doctype

    @staticmethod
    def _doctype(*_args: Any) -> None:
        raise SoapDecodeError("a SOAP message must not contain a document type declaration")

    def decode(self, body: bytes) -> SoapCall:
        try:
            self.parser.Parse(body, True)
        except SoapDecodeError:
            raise
        except ExpatError as exc:
            raise SoapDecodeError(
                f"Error returned by expat parser: {ErrorString(exc.code)}\n\n"
                f"while parsing SOAP envelope\nat line {exc.lineno}, column {exc.offset}"
            ) from None
        except Exception:  # pyVmomi failing outside a parameter's value
            raise SoapDecodeError("Unable to parse the SOAP request\n\n"
                                  "while parsing SOAP envelope") from None
        if self.method is None:
            raise SoapDecodeError("No method element in the SOAP body\n\n"
                                  "while parsing SOAP body\n\nwhile parsing SOAP envelope")
        call = SoapCall(self.method, self.this, self.args, self.vc_session_cookie)
        missing = required_missing(call)
        if missing is not None:
            raise SoapDecodeError(missing)
        return call

    def _param_info(self, name: str):
        for param in self.method.params:
            if param.name == name:
                return param
        raise SoapDecodeError(f'Unexpected element tag "{name}" seen\n\n'
                              f"while parsing call information for method "
                              f"{self.method.wsdlName}\n\nwhile parsing SOAP body\n\n"
                              "while parsing SOAP envelope")

    def _resume(self) -> None:
        # pyVmomi's deserializer finished a parameter value and restored our
        # handlers without calling us for that closing tag.
        if self._deser is not None:
            self._collect()
            self.depth -= 1

    def StartElementHandler(self, tag: str, attr: dict) -> None:  # noqa: N802
        self._resume()
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise SoapDecodeError(f"The request nests its elements more than {MAX_NESTING} "
                                  "levels deep\n\nwhile parsing SOAP envelope")
        ns, _, name = tag.rpartition(_NS_SEP)
        if self.depth == 1:
            if (ns, name) != (_SOAPENV, "Envelope"):
                raise SoapDecodeError(f"the root element is not a SOAP 1.1 Envelope ({_SOAPENV})")
        elif self.depth == 2:
            if ns != _SOAPENV or name not in ("Header", "Body"):
                raise SoapDecodeError(f"unexpected element {name} in the SOAP Envelope")
            # Header blocks (oslo.vmware's operationID) are not the call.
            self.in_body = name == "Body"
        elif not self.in_body:
            if self.depth == 3 and name == "vcSessionCookie":
                # PBM clients name their vCenter session here, not in a cookie.
                self._cookie = []
            return
        elif self.depth == 3 and self.method is not None:
            raise SoapDecodeError("more than one call in the SOAP Body")
        elif self.depth == 3:
            self.method = _method_info(ns or VIM_NS, name)
            if self.method is None:
                raise SoapDecodeError(f"Unable to resolve WSDL method name {_clip(name)}\n\n"
                                      "while parsing SOAP body\n\n"
                                      "while parsing SOAP envelope")
        elif self.depth == 4:
            if name == "_this":
                ptype, is_array, key = VmomiSupport.GetVmodlType("vmodl.ManagedObject"), False, None
            else:
                info = self._param_info(name)
                ptype, key = info.type, info.name
                is_array = issubclass(ptype, list)
                if is_array:
                    ptype = ptype.Item
            self._pending = (key, is_array)
            deser = _ParamDeserializer(self.method.wsdlName, self.depth - 1,
                                       _wire(method_namespace(self.method))[0])
            deser.Deserialize(self.parser, ptype, False, self.nsMap)
            self._deser = deser
            # The deserializer expects the value's own start tag next; it is
            # this one, so feed it by hand.  It restores our handlers when the
            # element closes (see _resume).
            deser.StartElementHandler(tag, attr)

    def EndElementHandler(self, tag: str) -> None:  # noqa: N802
        self._resume()
        if self._cookie is not None and self.depth == 3:
            # As the client's cookie jar holds it: quoted, as vCenter sets it.
            self.vc_session_cookie = "".join(self._cookie).strip().strip('"') or None
            self._cookie = None
        self.depth -= 1

    def _collect(self) -> None:
        value = self._deser.GetResult()
        key, is_array = self._pending
        self._deser = None
        self._pending = None
        if key is None:
            self.this = value
        elif is_array:
            self.args.setdefault(key, []).append(value)
        else:
            self.args[key] = value

    def CharacterDataHandler(self, data: str) -> None:  # noqa: N802
        if self._cookie is not None:
            self._cookie.append(data)


#: Calls that neither change nor keep their arguments: a body seen before
#: decodes to the same call, so it is decoded once and shared (clients
#: repeat these bodies: the same read, the same lazy property fetch).
_SHAREABLE = frozenset({
    "Fetch", "RetrievePropertiesEx", "RetrieveProperties", "ContinueRetrievePropertiesEx",
    "WaitForUpdatesEx", "WaitForUpdates", "CheckForUpdates", "CurrentTime",
    "RetrieveServiceContent"})
_DECODED_MAX = 512
_decoded: collections.OrderedDict[bytes, SoapCall] = collections.OrderedDict()
_decoded_lock = threading.Lock()


def decode_request(body: bytes) -> SoapCall:
    """Decode a vim25 SOAP request envelope.

    SoapDecodeError (its message in vCenter's words) for anything vCenter's
    parser would refuse: XML that is not well-formed, unknown methods,
    elements or types, values outside their xsd type, missing required
    parameters or data object properties.
    """
    with _decoded_lock:
        call = _decoded.get(body)
        if call is not None:
            _decoded.move_to_end(body)
            return call
    call = _simple_call(body) or _RequestDecoder().decode(body)
    if call.name in _SHAREABLE:
        with _decoded_lock:
            _decoded[body] = call
            if len(_decoded) > _DECODED_MAX:
                _decoded.popitem(last=False)
    return call


#: The envelope pyVmomi (and so oslo.vmware's vSphere clients that use it)
#: wraps every call in, byte for byte.
_PYVMOMI_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope '
                 b'xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" '
                 b'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                 b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                 b'xmlns:xsd="http://www.w3.org/2001/XMLSchema">\n<soapenv:Body>')
_PYVMOMI_TAIL = b"</soapenv:Body>\n</soapenv:Envelope>"
#: A vim25 call of ``_this`` and text-only parameters, nothing escaped.
_SIMPLE_BODY = re.compile(
    rb'<(\w+) xmlns="urn:vim25"><_this(?: versionId="[\w.]+")? type="(\w+)">([^<>&\r]+)'
    rb"</_this>((?:<\w+(?: versionId=\"[\w.]+\")?>[^<>&\r]+</\w+>)*)</\1>")
_SIMPLE_PARAM = re.compile(rb'<(\w+)(?: versionId="[\w.]+")?>([^<>&\r]+)</\1>')


def _simple_call(body: bytes) -> SoapCall | None:
    """The call in a pyVmomi request of ``_this`` and string parameters, or None.

    Most requests a client makes are such calls (lazy property reads,
    PowerOnVM_Task, DestroyPropertyFilter): read with one regular
    expression, they skip expat and pyVmomi's deserializer. Anything else
    -- another envelope, escaped text, a parameter that is not a string, a
    name vim25 does not know -- is None, for the full decoder (and its
    errors).
    """
    if not (body.startswith(_PYVMOMI_HEAD) and body.endswith(_PYVMOMI_TAIL)):
        return None
    match = _SIMPLE_BODY.fullmatch(body, len(_PYVMOMI_HEAD), len(body) - len(_PYVMOMI_TAIL))
    if match is None:
        return None
    name, this_type, moid = (g.decode("utf-8") for g in match.groups()[:3])
    params = match.group(4)
    method = _method_info(VIM_NS, name)
    if method is None:
        return None
    try:
        this_class = VmomiSupport.GetWsdlType(VIM_NS, this_type)
    except KeyError:
        return None
    if not issubclass(this_class, VmomiSupport.ManagedObject):
        return None
    args: dict[str, Any] = {}
    declared = {param.name: param.type for param in method.params}
    consumed = 0
    for param in _SIMPLE_PARAM.finditer(params):
        key = param.group(1).decode("utf-8")
        if param.start() != consumed or declared.get(key) is not str or key in args:
            return None
        args[key] = param.group(2).decode("utf-8")
        consumed = param.end()
    if consumed != len(params):
        return None
    call = SoapCall(method, this_class(moid), args)
    return call if required_missing(call) is None else None


_REQUIRED_CACHE: dict[type, tuple] = {}


def _required_properties(data_type: type) -> tuple:
    """The names of the properties of ``data_type`` that API ``VERSION`` requires."""
    found = _REQUIRED_CACHE.get(data_type)
    if found is None:
        found = tuple(
            p.name for p in data_type._GetPropertyList()
            if not p.flags & VmomiSupport.F_OPTIONAL
            and VmomiSupport.IsChildVersion(VERSION, p.version))
        _REQUIRED_CACHE[data_type] = found
    return found


def required_missing(call: SoapCall) -> str | None:
    """vCenter's message for the first required parameter or property ``call`` lacks, or None.

    Data objects are checked depth first with an explicit stack (a request
    may nest up to MAX_NESTING levels).
    """
    tail = (f"while parsing call information for method {call.name}\n\n"
            "while parsing SOAP body\n\nwhile parsing SOAP envelope")
    if call.this is None:
        return f"Required parameter _this is missing\n\n{tail}"
    for param in call.method.params:
        if not param.flags & VmomiSupport.F_OPTIONAL and param.name not in call.args:
            return f"Required parameter {param.name} is missing\n\n{tail}"
    # (value, chain): chain links the enclosing (data object, property name)s.
    pending: list[tuple[Any, Any]] = [(value, None) for value in call.args.values()]
    while pending:
        value, chain = pending.pop()
        if isinstance(value, list):
            pending.extend((item, chain) for item in value)
            continue
        if not isinstance(value, VmomiSupport.DataObject):
            continue
        data_type = type(value)
        for name in _required_properties(data_type):
            field = getattr(value, name, None)
            if field is None or (isinstance(field, list) and not field):
                lines = [f"Required property {name} is missing from data object of type "
                         f"{data_type._wsdlName}",
                         "while parsing serialized DataObject of type "
                         f"{VmomiSupport.GetVmodlName(data_type)}"]
                link = chain
                while link is not None:
                    link, holder, prop = link
                    lines.append(f'while parsing property "{prop}" of static type '
                                 f"{_type_name(holder._GetPropertyInfo(prop).type)}")
                    lines.append("while parsing serialized DataObject of type "
                                 f"{VmomiSupport.GetVmodlName(type(holder))}")
                return "\n\n".join([*lines, tail])
        for prop in data_type._GetPropertyList():
            child = getattr(value, prop.name, None)
            if isinstance(child, (VmomiSupport.DataObject, list)) and child:
                pending.append((child, (chain, value, prop.name)))
    return None


_VERSION_ID = re.compile(r' versionId="[^"]*"')


def _strip_version_id(xml: str) -> str:
    # pyVmomi marks the first element it writes with versionId; suds then
    # reads e.g. SessionIsActive's boolean as an object that is always true.
    # pyVmomi also types a reference inside an xsd:anyType value (e.g. a VM's
    # runtime.host) as "ManagedObject", vCenter as "ManagedObjectReference":
    # suds knows no "ManagedObject" type and searches its whole schema for
    # every such value (tens of milliseconds each). And it writes a carriage
    # return in a value as it is, which every XML parser reads as a line feed;
    # vCenter sends a character reference (pyVmomi's markup holds no carriage
    # return), so that "a\r\nb" reads back unchanged.
    return _VERSION_ID.sub("", xml, count=1).replace(
        ' xsi:type="ManagedObject"', ' xsi:type="ManagedObjectReference"').replace(
        "\r", "&#13;")


class Encoded:
    """A call's result already in wire form: the content of ``<Method>Response``.

    Assembled from :func:`encode_element` fragments (the property collector
    caches them per object and property), so the bytes are those pyVmomi's
    serializer writes for the same values.
    """

    __slots__ = ("xml",)

    def __init__(self, xml: str) -> None:
        self.xml = xml


def encode_element(value: Any, name: str, vtype: type) -> str:
    """``value`` as element ``name`` of declared type ``vtype``, as inside a response."""
    info = VmomiSupport.Object(name=name, type=vtype, version=VERSION, flags=0)
    return _strip_version_id(
        SoapAdapter.SerializeToStr(value, info=info, version=VERSION, nsMap=_NS_MAP))


_DYNAMIC_PROPERTY = VmomiSupport.GetVmodlType("vmodl.DynamicProperty")
_MANAGED_OBJECT = VmomiSupport.GetVmodlType("vmodl.ManagedObject")
#: Python class -> (kind, xsi:type) of the simple values written directly.
_SIMPLE: dict[type, tuple[str, str] | None] = {}


def _simple_kind(cls: type) -> tuple[str, str] | None:
    """How pyVmomi writes a value of ``cls`` into an xsd:anyType element, for simple types."""
    if cls in _SIMPLE:
        return _SIMPLE[cls]
    kind = None
    if issubclass(cls, VmomiSupport.ManagedObject):
        kind = ("ref", "ManagedObjectReference")  # pyVmomi's "ManagedObject", renamed
    elif cls is str or cls is bool or cls is datetime.datetime or \
            issubclass(cls, VmomiSupport.Enum) or \
            (issubclass(cls, (int, float)) and not issubclass(cls, bool)):
        ns, name = VmomiSupport.GetQualifiedWsdlName(cls)
        prefix = "" if ns == VIM_NS else _NS_MAP.get(ns)
        if prefix is not None:
            kind = ("text", f"{prefix}:{name}" if prefix else name)
    _SIMPLE[cls] = kind
    return kind


def encode_property(name: str, value: Any) -> str:
    """The ``propSet`` element (a DynamicProperty) of property ``name`` = ``value``.

    Simple values -- strings, numbers, booleans, enums, times, references:
    most properties clients read -- are written here directly, byte for byte
    as pyVmomi's serializer writes them (tests compare the two); the rest
    goes through that serializer.
    """
    kind = _simple_kind(value.__class__)
    if kind is None or (kind[0] == "ref" and (
            value._serverGuid is not None or "\r" in value._moId)):  # (rare)
        return encode_element(_DYNAMIC_PROPERTY(name=name, val=value), "propSet",
                              _DYNAMIC_PROPERTY)
    if kind[0] == "ref":
        val = (f'<val xsi:type="{kind[1]}" type="{value._wsdlName}">{value._moId}</val>')
    else:
        if value.__class__ is bool:
            text = "true" if value else "false"
        elif value.__class__ is datetime.datetime:
            text = Iso8601.ISO8601Format(value)
        else:
            text = _xml_text(str(value))
        val = f'<val xsi:type="{kind[1]}">{text}</val>'
    return f"<propSet><name>{_xml_text(name)}</name>{val}</propSet>"


def _xml_text(text: str) -> str:
    """``text`` as element content, escaped as :func:`encode_element` escapes it."""
    text = SoapAdapter.XmlEscape(text)
    return text.replace("\r", "&#13;") if "\r" in text else text


_PROP_SET_DATA_OBJECT = re.compile(r'<val xsi:type="(\w+)">')


def returnval_of_prop_set(prop_set: str, name: str) -> str | None:
    """Fetch's ``returnval`` of property ``name``, from its ``propSet`` element.

    Only a data object's (``<val xsi:type="TaskInfo">``): its content is
    what pyVmomi's serializer writes for the returnval of the same value
    (tests compare the two). None for any other value.
    """
    head = f"<propSet><name>{_xml_text(name)}</name>"
    tail = "</val></propSet>"
    if not (prop_set.startswith(head) and prop_set.endswith(tail)):
        return None
    match = _PROP_SET_DATA_OBJECT.match(prop_set, len(head))
    if match is None:
        return None
    wsdl_name = match.group(1)
    try:  # (not an array, not a reference)
        if not issubclass(VmomiSupport.GetWsdlType(VIM_NS, wsdl_name), VmomiSupport.DataObject):
            return None
    except KeyError:
        return None
    return (f'<returnval xsi:type="{wsdl_name}">'
            + prop_set[match.end():len(prop_set) - len(tail)] + "</returnval>")


def encode_reference(ref: Any, name: str) -> str:
    """A managed object reference as element ``name`` (an ObjectContent's ``obj``)."""
    if ref._serverGuid is not None or "\r" in ref._moId:  # (rare: pyVmomi's own writing)
        return encode_element(ref, name, _MANAGED_OBJECT)
    return f'<{name} type="{ref._wsdlName}">{ref._moId}</{name}>'


def encode_result(method, result: Any) -> str:
    """``result`` of ``method`` as the content of ``<Method>Response`` (its returnval)."""
    if isinstance(result, Encoded):
        return result.xml
    if result is None or (isinstance(result, list) and not result):
        return ""
    rtype = method.result
    if isinstance(result, list) and not issubclass(rtype, list):
        rtype = type(result)
    version, ns_map = _wire(method_namespace(method))
    info = VmomiSupport.Object(name="returnval", type=rtype, version=version, flags=0)
    return _strip_version_id(
        SoapAdapter.SerializeToStr(result, info=info, version=version, nsMap=ns_map))


def encode_response(method, result: Any) -> bytes:
    """Encode ``result`` (a value or :class:`Encoded`) as the ``<Method>Response`` envelope."""
    name = method.wsdlName
    namespace = method_namespace(method)
    return "".join((_ENVELOPE_HEAD, f'<{name}Response xmlns="{namespace}">',
                    encode_result(method, result), f"</{name}Response>",
                    _ENVELOPE_TAIL)).encode("utf-8")


def encode_fault(fault: vmodl.MethodFault, message: str | None = None) -> bytes:
    """Encode a vim fault as a SOAP fault (sent with HTTP 500)."""
    msg = message or getattr(fault, "msg", None) or type(fault).__name__
    # fault.msg is not part of the detail's schema; suds would reject it.
    fault.msg = None
    namespace, wsdl_name = VmomiSupport.GetQualifiedWsdlName(type(fault))
    version, ns_map = _wire(namespace)
    info = VmomiSupport.Object(name=wsdl_name + "Fault", type=type(fault), version=version, flags=0)
    detail = SoapAdapter.SerializeFaultDetail(fault, info=info, version=version, nsMap=ns_map)
    # Like vCenter: the detail element names its namespace and concrete type.
    head, sep, rest = _strip_version_id(detail).partition(">")
    head = head.rstrip("/")
    closing = rest if rest or not detail.rstrip().endswith("/>") else f"</{wsdl_name}Fault>"
    detail = f'{head} xmlns="{namespace}" xsi:type="{wsdl_name}"{sep or ">"}{closing}'
    fault.msg = msg
    code = "ServerFaultCode"
    body = (
        f"<soapenv:Fault><faultcode>{code}</faultcode>"
        f"<faultstring>{SoapAdapter.XmlEscape(msg)}</faultstring>"
        f"<detail>{detail}</detail></soapenv:Fault>"
    )
    return (_ENVELOPE_HEAD + body + _ENVELOPE_TAIL).encode("utf-8")


def encode_client_fault(message: str) -> bytes:
    """A SOAP fault for undecodable requests (no vim fault type applies)."""
    fault = vmodl.fault.InvalidRequest()
    return encode_fault(fault, message)


_PRIOR_VERSIONS = ("7.0.3.0", "7.0.2.0", "7.0.1.0", "7.0.0.0", "6.7.3", "6.7.2", "6.7.1",
                   "6.7", "6.5", "6.0", "5.5", "5.1", "5.0", "4.1", "4.0")


def service_versions_xml() -> bytes:
    """``/sdk/vimServiceVersions.xml``: how clients negotiate the API version."""
    prior = "".join(f"<version>{v}</version>" for v in _PRIOR_VERSIONS)
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n<namespaces version="1.0">\n'
        f"<namespace><name>{VIM_NS}</name><version>{API_VERSION}</version>"
        f"<priorVersions>{prior}</priorVersions></namespace>\n</namespaces>\n"
    ).encode()
