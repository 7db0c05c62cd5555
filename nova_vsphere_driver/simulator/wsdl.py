"""The WSDL set that suds-based clients (oslo.vmware) download from ``/sdk``.

vCenter serves ``vimService.wsdl`` which imports ``vim.wsdl`` (elements,
messages, port type and binding of every method) which includes
``vim-messagetypes.xsd`` (one ``<Method>RequestType`` per method) and the
type schemas. oslo.vmware ships the type schemas (``vim-types.xsd``,
``core-types.xsd``, ``query-types.xsd``, ``reflect-types.xsd``) but not the
method documents, so those are generated here from pyVmomi's type registry,
which knows every managed method with its parameters, result and faults.

Only ``urn:vim25`` methods of API 8.0 and older whose types all exist in the
8.0 schemas are described (vSAN-only and newer methods are left out): the
two halves must agree or suds refuses the document.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any
from xml.sax.saxutils import quoteattr

import oslo_vmware
from pyVmomi import VmomiSupport

from nova_vsphere_driver.simulator.soap import API_VERSION, VERSION, VIM_NS

#: Type schemas taken as they are from oslo.vmware's package.
TYPE_SCHEMAS = ("vim-types.xsd", "core-types.xsd", "query-types.xsd", "reflect-types.xsd")
SCHEMA_DIR = os.path.join(os.path.dirname(oslo_vmware.__file__), "wsdl", "8.0")

_XSD = "http://www.w3.org/2001/XMLSchema"
_HEAD = '<?xml version="1.0" encoding="UTF-8" ?>\n'
#: vim25 names that the schemas spell as plain strings.
_STRING_ALIASES = {"TypeName", "PropertyPath", "MethodName"}
_DEFINED = re.compile(r'<(?:complexType|simpleType) name="([A-Za-z0-9_]+)"')


def _read_shipped(names) -> dict[str, bytes]:
    """oslo.vmware's 8.0 WSDL/XSD files by name, as they are."""
    texts = {}
    for name in names:
        with open(os.path.join(SCHEMA_DIR, name), "rb") as handle:
            texts[name] = handle.read()
    return texts


@functools.lru_cache(maxsize=1)
def _schema_texts() -> dict[str, bytes]:
    return _read_shipped(TYPE_SCHEMAS)


@functools.lru_cache(maxsize=1)
def _defined_types() -> frozenset[str]:
    """Every vim25 type name the shipped schemas define."""
    names: set[str] = set()
    for text in _schema_texts().values():
        names.update(_DEFINED.findall(text.decode("utf-8")))
    return frozenset(names)


class _UnknownType(Exception):
    """A method refers to a type the 8.0 schemas lack."""


def _xsd_type(vmodl_type: Any) -> str:
    """The qualified schema type of a pyVmomi type (arrays: their item type)."""
    if issubclass(vmodl_type, list):
        vmodl_type = vmodl_type.Item
    if issubclass(vmodl_type, VmomiSupport.ManagedObject):
        return "vim25:ManagedObjectReference"
    ns, name = VmomiSupport.GetQualifiedWsdlName(vmodl_type)
    if ns == _XSD:
        return "xsd:" + name
    if name in _STRING_ALIASES:
        return "xsd:string"
    if name not in _defined_types():
        raise _UnknownType(name)
    return "vim25:" + name


def _element(name: str, vmodl_type: Any, optional: bool, indent: str) -> str:
    occurs = ' minOccurs="0"' if optional else ""
    if issubclass(vmodl_type, list):
        occurs += ' maxOccurs="unbounded"'
    return f'{indent}<element name="{name}" type="{_xsd_type(vmodl_type)}"{occurs} />'


def _in_version(version: str) -> bool:
    return VmomiSupport.IsChildVersion(VERSION, version)


class _Method:
    """One method as the WSDL describes it (everything resolved up front)."""

    def __init__(self, info: Any) -> None:
        self.name = info.wsdlName
        params = ['         <element name="_this" type="vim25:ManagedObjectReference" />']
        for param in info.params:
            if not _in_version(param.version):
                continue
            params.append(_element(param.name, param.type,
                                   bool(param.flags & VmomiSupport.F_OPTIONAL), "         "))
        self.request_params = params
        result = info.result
        if result is type(None) or result is None:
            self.returnval = None
        else:
            optional = bool(info.resultFlags & VmomiSupport.F_OPTIONAL) or issubclass(result, list)
            self.returnval = _element("returnval", result, optional, "                  ")
        faults = []
        for name in info.faults:
            fault = VmomiSupport.GetVmodlType(name)
            faults.append(_xsd_type(fault).split(":", 1)[1])
        # Every vim25 method may raise RuntimeFault; the WSDL says so.
        self.faults = sorted(set(faults) | {"RuntimeFault"})


def _method_infos() -> Iterator[Any]:
    for ns, name in sorted(VmomiSupport._wsdlMethodMap):
        if ns != VIM_NS:
            continue
        try:
            info = VmomiSupport.GetWsdlMethod(ns, name).info
        except (KeyError, AttributeError):
            continue
        if _in_version(info.version):
            yield info


@functools.lru_cache(maxsize=1)
def methods() -> tuple[_Method, ...]:
    """The methods the generated documents describe, sorted by name."""
    found = {}
    for info in _method_infos():
        try:
            method = _Method(info)
        except _UnknownType:
            continue
        found.setdefault(method.name, method)
    return tuple(found[name] for name in sorted(found))


def _message_types(items: Iterable[_Method]) -> bytes:
    out = [_HEAD, '<schema targetNamespace="urn:vim25" xmlns="http://www.w3.org/2001/XMLSchema" '
           'xmlns:vim25="urn:vim25" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
           'xmlns:reflect="urn:reflect" elementFormDefault="qualified">',
           '   <include schemaLocation="core-types.xsd" />',
           '   <import namespace="urn:reflect" schemaLocation="reflect-types.xsd" />',
           '   <include schemaLocation="query-types.xsd" />',
           '   <include schemaLocation="vim-types.xsd" />']
    for method in items:
        out.append(f'   <complexType name="{method.name}RequestType">')
        out.append("      <sequence>")
        out.extend(method.request_params)
        out.append("      </sequence>")
        out.append("   </complexType>")
    out.append("</schema>\n")
    return "\n".join(out).encode("utf-8")


def _vim_wsdl(items: tuple[_Method, ...]) -> bytes:
    faults = sorted({f for m in items for f in m.faults})
    out = [_HEAD, '<definitions targetNamespace="urn:vim25" '
           'xmlns="http://schemas.xmlsoap.org/wsdl/" '
           'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" '
           'xmlns:vim25="urn:vim25" xmlns:xsd="http://www.w3.org/2001/XMLSchema">',
           "   <types>",
           '      <schema targetNamespace="urn:vim25" xmlns="http://www.w3.org/2001/XMLSchema" '
           'xmlns:vim25="urn:vim25" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
           'elementFormDefault="qualified">',
           '         <include schemaLocation="vim-messagetypes.xsd" />',
           '         <element name="versionURI" type="xsd:string" />']
    out.extend(f'         <element name="{f}Fault" type="vim25:{f}" />' for f in faults)
    for m in items:
        out.append(f'         <element name="{m.name}" type="vim25:{m.name}RequestType" />')
        if m.returnval is None:
            out.append(f'         <element name="{m.name}Response"><complexType /></element>')
        else:
            out.extend([f'         <element name="{m.name}Response">',
                        "            <complexType>", "               <sequence>",
                        m.returnval, "               </sequence>", "            </complexType>",
                        "         </element>"])
    out += ["      </schema>", "   </types>"]
    for f in faults:
        out += [f'   <message name="{f}FaultMsg">',
                f'      <part name="fault" element="vim25:{f}Fault" />', "   </message>"]
    for m in items:
        for kind, element in (("Request", m.name), ("Response", m.name + "Response")):
            out += [f'   <message name="{m.name}{kind}Msg">',
                    f'      <part name="parameters" element="vim25:{element}" />',
                    "   </message>"]
    out.append('   <portType name="VimPortType">')
    for m in items:
        out += [f'      <operation name="{m.name}">',
                f'         <input message="vim25:{m.name}RequestMsg" />',
                f'         <output message="vim25:{m.name}ResponseMsg" />']
        out.extend(f'         <fault name="{f}Fault" message="vim25:{f}FaultMsg" />'
                   for f in m.faults)
        out.append("      </operation>")
    out.append("   </portType>")
    out += ['   <binding name="VimBinding" type="vim25:VimPortType">',
            '      <soap:binding style="document" '
            'transport="http://schemas.xmlsoap.org/soap/http" />']
    action = f"urn:vim25/{API_VERSION}"
    for m in items:
        out += [f'      <operation name="{m.name}">',
                f'         <soap:operation soapAction="{action}" style="document" />',
                '         <input><soap:body use="literal" /></input>',
                '         <output><soap:body use="literal" /></output>']
        out.extend(f'         <fault name="{f}Fault"><soap:fault name="{f}Fault" '
                   'use="literal" /></fault>' for f in m.faults)
        out.append("      </operation>")
    out += ["   </binding>", "</definitions>\n"]
    return "\n".join(out).encode("utf-8")


def _service_wsdl(sdk_url: str) -> bytes:
    location = quoteattr(sdk_url.rstrip("/") + "/vimService")
    return (
        f"{_HEAD}<definitions targetNamespace=\"urn:vim25Service\" "
        'xmlns="http://schemas.xmlsoap.org/wsdl/" '
        'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:interface="urn:vim25">\n'
        '   <import location="vim.wsdl" namespace="urn:vim25" />\n'
        '   <service name="VimService">\n'
        '      <port binding="interface:VimBinding" name="VimPort">\n'
        f"         <soap:address location={location} />\n"
        "      </port>\n   </service>\n</definitions>\n"
    ).encode()


@functools.lru_cache(maxsize=1)
def _static_documents() -> dict[str, bytes]:
    items = methods()
    docs = dict(_schema_texts())
    docs["vim-messagetypes.xsd"] = _message_types(items)
    docs["vim.wsdl"] = _vim_wsdl(items)
    return docs


def wsdl_documents(sdk_url: str) -> dict[str, bytes]:
    """Every document of the WSDL set by file name, for an endpoint at ``sdk_url``.

    The method documents are generated once per process (about 1,000
    methods); only ``vimService.wsdl`` names the endpoint.
    """
    docs = dict(_static_documents())
    docs["vimService.wsdl"] = _service_wsdl(sdk_url)
    return docs


def write_documents(directory: str, sdk_url: str = "https://localhost/sdk") -> str:
    """Write the WSDL set to ``directory``; returns the path of vimService.wsdl.

    For clients configured with a local ``wsdl_location``: suds caches what
    it parsed by URL, so one file set serves every endpoint of a process.
    """
    os.makedirs(directory, exist_ok=True)
    for name, body in wsdl_documents(sdk_url).items():
        path = os.path.join(directory, name)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(body)
        os.replace(tmp, path)
    return os.path.join(directory, "vimService.wsdl")


#: The storage policy API's WSDL set, as oslo.vmware ships it for vSphere 8.0.
PBM_DOCUMENTS = ("pbmService.wsdl", "pbm.wsdl", "pbm-messagetypes.xsd", "pbm-types.xsd",
                 *TYPE_SCHEMAS)
_PBM_ADDRESS = re.compile(rb'(<soap:address location=")[^"]*(")')


@functools.lru_cache(maxsize=1)
def _pbm_static() -> dict[str, bytes]:
    # The vim25 type schemas it imports are the ones already read for vim25.
    own = [name for name in PBM_DOCUMENTS if name not in TYPE_SCHEMAS]
    return {**_read_shipped(own), **_schema_texts()}


def pbm_documents(pbm_url: str) -> dict[str, bytes]:
    """The storage policy API's WSDL set by file name, ``pbmService.wsdl`` naming
    ``pbm_url`` as the endpoint (oslo.vmware's files: it parses them as they are)."""
    docs = dict(_pbm_static())
    docs["pbmService.wsdl"] = _PBM_ADDRESS.sub(
        lambda m: m.group(1) + pbm_url.encode() + m.group(2), docs["pbmService.wsdl"])
    return docs


__all__ = ["PBM_DOCUMENTS", "TYPE_SCHEMAS", "methods", "pbm_documents", "wsdl_documents",
           "write_documents"]
