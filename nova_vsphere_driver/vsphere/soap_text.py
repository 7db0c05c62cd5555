"""Text reaches vCenter exactly as given: escaping of SOAP requests, per suds client.

suds escapes element text with a pattern that leaves ``&amp;``, ``&lt;``,
``&gt;``, ``&quot;`` and ``&apos;`` alone, taking them for escapes it made
itself: the password ``p&amp;w`` goes out unchanged and vCenter's XML parser
reads ``p&w``; a display name ``a &lt;b&gt;`` arrives as ``a <b>``. A lone
carriage return is read back as a line feed (XML normalises line ends), so it
must go out as a character reference.

:class:`ExactText` is a suds message plugin that escapes every text and
attribute value of a request completely before suds renders it, and marks it
escaped so that suds leaves it alone. It is installed on one client (our
session's), never on suds' module-wide encoder: other users of suds in the
process (Nova's own code may be one) keep suds' behaviour.

Characters XML 1.0 cannot carry at all (most C0 controls, U+FFFE, U+FFFF,
lone surrogates) cannot reach vCenter in any form: the request is refused
with :class:`UnsendableText` naming the element and the code point -- never
the text itself, which may be a password.
"""

from __future__ import annotations

import re

from oslo_vmware import exceptions as vexc
from suds.plugin import MessagePlugin
from suds.sax.text import Text

#: What XML 1.0 cannot carry, not even as a character reference.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: Every character with a meaning in XML text or attributes, and the line-end
#: and tab characters a parser would normalise.
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;",
            "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"}
_SPECIAL = re.compile("[&<>\"'\r\n\t]")
_SPECIAL_IN_TEXT = re.compile("[&<>\"'\r]")


class UnsendableText(vexc.VimException):
    """A request holds a character that XML 1.0 cannot represent."""


def escape(text: str, attribute: bool = False) -> str:
    """``text`` as XML that any parser reads back as exactly ``text``.

    In element text, line feeds and tabs stay literal (parsers keep them);
    in attribute values they are references, as parsers normalise them to
    spaces there.
    """
    pattern = _SPECIAL if attribute else _SPECIAL_IN_TEXT
    return pattern.sub(lambda m: _ESCAPES[m.group(0)], text)


def check_sendable(text: str, where: str) -> None:
    """Raise :class:`UnsendableText` if ``text`` cannot go into XML at ``where``."""
    bad = _NOT_XML.search(text)
    if bad is not None:
        raise UnsendableText(
            f"{where} holds the character U+{ord(bad.group(0)):04X}, which XML (and so "
            "vCenter) cannot carry")


class ExactText(MessagePlugin):
    """Escape each request completely, just before suds renders it."""

    def marshalled(self, context) -> None:
        for element in context.envelope.branch():
            for attr in element.attributes:
                value = attr.value
                if isinstance(value, str) and not getattr(value, "escaped", False):
                    check_sendable(value, f"attribute {attr.qname()} of <{element.qname()}>")
                    attr.value = Text(escape(value, attribute=True), escaped=True)
            text = element.text
            if isinstance(text, str) and not getattr(text, "escaped", False):
                check_sendable(text, f"<{element.qname()}>")
                element.text = Text(escape(text), escaped=True, lang=getattr(text, "lang", None))


def install(client) -> None:
    """Put :class:`ExactText` on ``client`` (a suds Client), once."""
    plugins = list(client.options.plugins or [])
    if not any(isinstance(p, ExactText) for p in plugins):
        client.set_options(plugins=[*plugins, ExactText()])
