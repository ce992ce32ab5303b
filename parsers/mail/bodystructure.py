"""An IMAP FETCH response read into plain data: BODYSTRUCTURE, size, header block.

The first pass asks the server for ``UID RFC822.SIZE BODYSTRUCTURE
BODY.PEEK[HEADER]`` (one FETCH for a batch) and decides from that whether
the body must be read at all. imap-tools does not parse BODYSTRUCTURE, so
this module reads the response as imaplib hands it over: a list whose items
are either bytes or ``(bytes ending in {n}, literal)`` pairs, the literal
being the ``n`` bytes the server sent after ``{n}``.

The grammar is RFC 3501's (section 7.4.2 and 9): lists in parentheses,
atoms, numbers, ``NIL``, quoted strings with ``\\`` escapes, and literals
anywhere a string may be (servers use them for 8-bit or long file names).
Multiparts nest; a ``message/rfc822`` part carries the envelope, body and
line count of the message it holds. File names come from the
Content-Disposition ``filename`` or the Content-Type ``name`` parameter,
with RFC 2231 continuations and charsets (``name*0*``, ``name*1*``...) and
RFC 2047 encoded words decoded.

Pure: bytes in, frozen data out; never raises on a malformed response
except ``BodyStructureError``.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from parsers.errors import MailParseError
from parsers.mail.charsets import _decode_words

# Nesting of lists a response may have: far above any real message
# (BODYSTRUCTURE of a part nested 100 deep), far below the recursion limit.
_MAX_DEPTH = 200
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")
# A backslash pair in a quoted string.
_ESCAPE = re.compile(rb"\\(.)", re.S)
# An atom, with bracketed sections kept whole ("BODY[HEADER.FIELDS (A B)]").
_ATOM = rb"(?:[^ \r\n\t()\x00\[\]]|\[[^\]]*+\])++"
_QUOTED = rb'"(?:[^"\\]|\\.)*+"'
# One token after optional space: ( ) "quoted" (any byte but a quote or
# backslash, or a backslash pair), NUL (where a literal was) or an atom.
_TOKEN = re.compile(rb"[ \r\n\t]*+(?:(\()|(\))|(" + _QUOTED + rb")|(\x00)|(" + _ATOM + rb"))", re.S)
# A whole response: tokens and space only (checked before ``findall``,
# which would skip what is not a token).
_RESPONSE = re.compile(
    rb"(?:[ \r\n\t]*+(?:[()\x00]|" + _QUOTED + rb"|" + _ATOM + rb"))*+[ \r\n\t]*+", re.S
)
_RFC2231_PART = re.compile(r"^(?P<name>[^*]+)\*(?:(?P<index>\d+)\*?|)$")


class BodyStructureError(MailParseError):
    """A FETCH response that is not well-formed."""


class _Nil:
    """IMAP ``NIL`` (distinct from an empty string)."""

    def __repr__(self) -> str:
        return "NIL"


NIL = _Nil()


@dataclass(frozen=True)
class BodyPart:
    """One part of a message as BODYSTRUCTURE describes it."""

    # IMAP section number of the part ("1", "2.1"); "" for a multipart at the top.
    section: str
    # Lower case "type/subtype".
    content_type: str
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    encoding: str = ""
    # Octets of the part's body as the server stores it (encoded); 0 for multiparts.
    size: int = 0
    disposition: str = ""
    disposition_params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Decoded file name (Content-Disposition filename, else Content-Type name), or "".
    filename: str = ""
    # The parts of a multipart; the body of an attached message (message/rfc822).
    parts: tuple[BodyPart, ...] = ()

    def walk(self) -> Iterator[BodyPart]:
        """This part and every part inside it, depth first, in order."""
        yield self
        for part in self.parts:
            yield from part.walk()

    @property
    def is_multipart(self) -> bool:
        return self.content_type.startswith("multipart/")


@dataclass(frozen=True)
class FetchedStructure:
    """What the first FETCH returns for one message."""

    uid: int
    size: int
    structure: BodyPart
    header: bytes
    flags: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# Tokens and lists


def _segments(data: Sequence[bytes | tuple[bytes, bytes]]) -> list[bytes | tuple[bytes, bytes]]:
    return [item for item in data if item is not None]


def _values(text: bytes, literals: list[bytes]) -> list[object]:
    """The top-level values of ``text``: lists (nested), bytes and NIL, literals put back.

    One ``findall`` gives every token; the loop only builds the lists. A
    text that is not made of tokens alone is refused first by one linear
    ``fullmatch`` (possessive quantifiers: no backtracking on bad input).
    """
    if _RESPONSE.fullmatch(text) is None:
        raise BodyStructureError("malformed response: not a sequence of IMAP tokens")
    top: list[object] = []
    stack: list[list[object]] = []
    taken = 0
    for opening, closing, quoted, nul, atom in _TOKEN.findall(text):
        item: object
        if opening:
            if len(stack) > _MAX_DEPTH:
                raise BodyStructureError("response nested too deep")
            stack.append([])
            continue
        if closing:
            if not stack:
                raise BodyStructureError("unexpected ')'")
            item = stack.pop()
        elif quoted:
            body = quoted[1:-1]
            item = _ESCAPE.sub(rb"\1", body) if b"\\" in body else body
        elif nul:
            if taken >= len(literals):
                raise BodyStructureError("literal missing")
            item = literals[taken]
            taken += 1
        elif atom[:1] == b'"':
            raise BodyStructureError("unterminated quoted string")
        else:
            item = NIL if len(atom) == 3 and atom.upper() == b"NIL" else atom
        (stack[-1] if stack else top).append(item)
    if stack:
        raise BodyStructureError("unbalanced parentheses")
    return top


def _join(data: Sequence[bytes | tuple[bytes, bytes]]) -> tuple[bytes, list[bytes]]:
    """One text with a NUL where each literal was, and the literals in order."""
    text = bytearray()
    literals: list[bytes] = []
    for item in _segments(data):
        if isinstance(item, tuple):
            head, literal = item
            match = _LITERAL.search(head)
            if match is None:
                raise BodyStructureError(f"literal without its {{n}} marker: {head[-40:]!r}")
            text += head[: match.start()] + b"\x00"
            literals.append(literal)
        else:
            text += b" " + item if text and not text.endswith(b"\x00") else item
    return bytes(text), literals


def parse_fetch_responses(
    data: Sequence[bytes | tuple[bytes, bytes]],
) -> list[tuple[int, dict[str, object]]]:
    """Each ``* n FETCH (...)`` of an imaplib answer: (sequence number, items by upper name).

    imaplib gives the untagged FETCH responses without the ``* `` and
    ``FETCH``: ``b'1 (UID 1 ...'``. Responses the server adds (flag changes)
    come out too: callers key on the UID.
    """
    text, literals = _join(data)
    values = _values(text, literals)
    found: list[tuple[int, dict[str, object]]] = []
    index = 0
    while index < len(values):
        number = values[index]
        if not isinstance(number, bytes) or not number.isdigit():
            raise BodyStructureError(f"expected a message number, got {number!r}")
        index += 1
        if index < len(values) and isinstance(values[index], bytes):
            if values[index].upper() != b"FETCH":
                raise BodyStructureError(f"message {number!r}: unexpected {values[index]!r}")
            index += 1
        if index >= len(values):
            raise BodyStructureError(f"message {number!r}: response ends too early")
        items = values[index]
        index += 1
        if not isinstance(items, list) or len(items) % 2:
            raise BodyStructureError(f"message {number!r}: FETCH items are not pairs")
        pairs: dict[str, object] = {}
        for name, value in zip(items[::2], items[1::2], strict=True):
            if not isinstance(name, bytes):
                raise BodyStructureError(f"message {number!r}: item name {name!r}")
            pairs[name.decode("ascii", "replace").upper()] = value
        found.append((int(number), pairs))
    return found


def fetched_structures(data: Sequence[bytes | tuple[bytes, bytes]]) -> list[FetchedStructure]:
    """The messages of a ``UID FETCH (UID RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER])`` answer.

    Responses without all four items (a server's unsolicited FLAGS update)
    and messages whose structure cannot be read are left out: the caller
    reads those whole.
    """
    out = []
    for _number, items in parse_fetch_responses(data):
        uid, size = items.get("UID"), items.get("RFC822.SIZE")
        structure = items.get("BODYSTRUCTURE")
        header = items.get("BODY[HEADER]")
        if not (isinstance(uid, bytes) and uid.isdigit() and isinstance(size, bytes)):
            continue
        if not isinstance(structure, list) or not isinstance(header, bytes):
            continue
        try:
            parsed = parse_bodystructure(structure)
        except BodyStructureError:
            continue  # left out: that message is read whole
        flags = items.get("FLAGS")
        out.append(
            FetchedStructure(
                uid=int(uid),
                size=int(size) if size.isdigit() else 0,
                structure=parsed,
                header=header,
                flags=tuple(_text(f) for f in flags) if isinstance(flags, list) else (),
            )
        )
    return out


# --------------------------------------------------------------------------
# BODYSTRUCTURE


def parse_bodystructure(value: object, *, section: str = "") -> BodyPart:
    """A ``BodyPart`` tree from a BODYSTRUCTURE list (as ``parse_fetch_responses`` gives it)."""
    return _part(value, section=section, depth=0)


def _part(value: object, *, section: str, depth: int) -> BodyPart:
    if not isinstance(value, list) or not value:
        raise BodyStructureError(f"body part {section or 'top'} is not a list")
    if depth > _MAX_DEPTH:
        raise BodyStructureError("body structure nested too deep")
    if isinstance(value[0], list):
        return _multipart(value, section=section, depth=depth)
    return _single(value, section=section or "1", depth=depth)


def _multipart(value: list, *, section: str, depth: int) -> BodyPart:
    children = []
    index = 0
    while index < len(value) and isinstance(value[index], list):
        number = f"{section}.{index + 1}" if section else str(index + 1)
        children.append(_part(value[index], section=number, depth=depth + 1))
        index += 1
    rest = value[index:]
    subtype = _text(rest[0]).lower() if rest else "mixed"
    params = _params(rest[1]) if len(rest) > 1 else {}
    disposition, disposition_params = _disposition(rest[2]) if len(rest) > 2 else ("", {})
    return BodyPart(
        section=section,
        content_type=f"multipart/{subtype}",
        params=MappingProxyType(params),
        disposition=disposition,
        disposition_params=MappingProxyType(disposition_params),
        parts=tuple(children),
    )


def _single(value: list, *, section: str, depth: int) -> BodyPart:
    if len(value) < 7:
        raise BodyStructureError(f"body part {section}: {len(value)} fields, 7 at least")
    main, sub = _text(value[0]).lower(), _text(value[1]).lower()
    content_type = f"{main}/{sub}"
    params = _params(value[2])
    encoding = _text(value[5]).lower()
    size = _number(value[6])
    # Extension data follows the basic fields: text/* has a line count,
    # message/rfc822 an envelope, a body and a line count first.
    extension = 7
    parts: tuple[BodyPart, ...] = ()
    if content_type in ("message/rfc822", "message/global") and len(value) >= 10:
        inner = value[8]
        if isinstance(inner, list) and inner:
            # RFC 3501: the parts of the attached message are numbered below
            # this part ("2.1"); a single-part body is "2.1" too.
            inner_section = section if isinstance(inner[0], list) else f"{section}.1"
            if isinstance(inner[0], list):
                parts = (_multipart(inner, section=section, depth=depth + 1),)
            else:
                parts = (_single(inner, section=inner_section, depth=depth + 1),)
        extension = 10
    elif main == "text":
        extension = 8
    rest = value[extension:]
    # Single-part extension: MD5, disposition, language, location.
    disposition, disposition_params = _disposition(rest[1]) if len(rest) > 1 else ("", {})
    return BodyPart(
        section=section,
        content_type=content_type,
        params=MappingProxyType(params),
        encoding=encoding,
        size=size,
        disposition=disposition,
        disposition_params=MappingProxyType(disposition_params),
        filename=_filename(disposition_params, params),
        parts=parts,
    )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return ""


def _number(value: object) -> int:
    text = _text(value)
    return int(text) if text.isdigit() else 0


def _params(value: object) -> dict[str, str]:
    """Parameters as (lower-case name -> raw value), RFC 2231 pieces kept as sent."""
    if not isinstance(value, list):
        return {}
    params: dict[str, str] = {}
    for name, item in zip(value[::2], value[1::2], strict=False):
        key = _text(name).lower()
        if key and key not in params:
            params[key] = _text(item)
    return params


def _disposition(value: object) -> tuple[str, dict[str, str]]:
    if not isinstance(value, list) or not value:
        return "", {}
    kind = _text(value[0]).lower()
    params = _params(value[1]) if len(value) > 1 else {}
    return kind, params


def _filename(disposition: Mapping[str, str], params: Mapping[str, str]) -> str:
    for source, key in ((disposition, "filename"), (params, "name")):
        found = _rfc2231(source, key)
        if found:
            return found
    return ""


def _rfc2231(params: Mapping[str, str], key: str) -> str:
    """The value of ``key`` with RFC 2231 continuations and charset, or RFC 2047 words decoded."""
    if key in params:
        return _decode_words(params[key], None, "").strip()
    pieces: list[tuple[int, bool, str]] = []
    for name, value in params.items():
        match = _RFC2231_PART.match(name)
        if not match or match.group("name") != key:
            continue
        index = int(match.group("index")) if match.group("index") else 0
        pieces.append((index, name.endswith("*"), value))
    if not pieces:
        return ""
    pieces.sort()
    charset = "us-ascii"
    data = bytearray()
    for position, (_index, encoded, value) in enumerate(pieces):
        if encoded:
            if position == 0 and value.count("'") >= 2:
                charset, _language, value = value.split("'", 2)
            data += urllib.parse.unquote_to_bytes(value)
        else:
            data += value.encode("utf-8", "replace")
    try:
        return data.decode(charset or "us-ascii").strip()
    except (LookupError, UnicodeDecodeError):
        return data.decode("utf-8", "replace").strip()
