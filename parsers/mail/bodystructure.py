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

``fetched_structures`` reads the usual answer through ``_fast_values``
(C-level splits and replaces, then the C JSON decoder) and falls back on
the general tokenizer ``_values`` for anything unusual and for every
refusal; tests/test_bodystructure_speed.py holds both to a frozen copy of
the reader as it was before.
"""

from __future__ import annotations

import json
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
# The fast tokenizer (``_fast_values``): quoted strings split out, the rest
# (parentheses, atoms, NUL) rewritten into JSON text with C-level replaces.
# (_QUOTED unrolled: the same strings, no alternation tried per byte.)
_QUOTED_SPLIT = re.compile(rb'("[^"\\]*+(?:\\.[^"\\]*+)*+")', re.S)
# Atom bytes to "a", the others kept: b"a\x01" finds a quoted string glued to
# an atom before it, which is part of that atom ('a"b"').
_ATOMS_TO_A = bytes(b if b in b" \r\n\t()\x00\x01" else ord("a") for b in range(256))
# Once the \\ pairs are gone, a backslash pair JSON reads otherwise than
# IMAP (IMAP "\a" is "a"; \" and \\ mean the same in both).
_NON_JSON_ESCAPE = re.compile(rb'\\[^"]')
_ANY_CASE_NIL = re.compile(rb'"[Nn][Ii][Ll]"')
_SPACES = bytes.maketrans(b"\r\n\t", b"   ")
_NOT_PARENS = bytes(b for b in range(256) if b not in b"()")
# Nesting ``_values`` takes (it refuses the 202nd level); deeper answers go
# the general way, which words the refusal.
_FAST_DEPTH = _MAX_DEPTH + 1
# String tokens: bytes from ``_values``, latin-1 str from ``_fast_values``.
_STRINGS = (bytes, str)
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


# ``BodyPart(...)`` of a frozen dataclass sets each field through
# ``object.__setattr__``: a third of the BODYSTRUCTURE reading. A plain
# dataclass keeps its fields in the instance ``__dict__``, so filling that
# gives the same object; should the class ever use slots or a
# ``__post_init__``, the constructor is called as usual.
_DIRECT_PARTS = not hasattr(BodyPart, "__slots__") and not hasattr(BodyPart, "__post_init__")


def _body_part(
    *,
    section: str,
    content_type: str,
    params: Mapping[str, str],
    encoding: str,
    size: int,
    disposition: str,
    disposition_params: Mapping[str, str],
    filename: str,
    parts: tuple[BodyPart, ...],
) -> BodyPart:
    """``BodyPart(...)`` with every field given, built directly when that is the same."""
    fields = {
        "section": section,
        "content_type": content_type,
        "params": params,
        "encoding": encoding,
        "size": size,
        "disposition": disposition,
        "disposition_params": disposition_params,
        "filename": filename,
        "parts": parts,
    }
    if not _DIRECT_PARTS:
        return BodyPart(**fields)
    part = object.__new__(BodyPart)
    part.__dict__.update(fields)
    return part


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


def _fast_values(text: bytes, literals: list[bytes]) -> list[object] | None:
    """What ``_values`` gives, strings as latin-1 ``str`` (literals as bytes), NIL as None; or None.

    None when the text is not one this path is sure to read exactly as
    ``_values`` (a quote or bracket inside an atom, an escape JSON reads
    otherwise, nesting deeper than ``_FAST_DEPTH``, any malformation): the
    caller then takes ``_values``, which also gives the exact refusal.
    The quoted strings are cut out by one ``split``; what is left (atoms,
    parentheses, NUL for literals) is turned into JSON text by whole-text
    replaces, and the C ``json`` decoder builds the lists.
    """
    if b"\x01" in text:
        return None
    parts = _QUOTED_SPLIT.split(text)
    quoted = parts[1::2]
    rest = b"\x01".join(parts[0::2])  # \x01 where each quoted string was
    if not _plain_structure(rest, len(literals)) or (
        b"\\" in text and _NON_JSON_ESCAPE.search(b"".join(quoted).replace(b"\\\\", b""))
    ):
        return None
    rest = rest.replace(b"\\", b"\\\\").translate(_SPACES)
    # Every token becomes a JSON string: "atom","(","\x00",")" ...
    rest = (
        rest.replace(b" ", b'","')
        .replace(b"(", b'","(","')
        .replace(b")", b'",")","')
        .replace(b"\x00", b'","\x00","')
        .replace(b"\x01", b'","\x01","')
    )
    rest = (b'"' + rest + b'"').replace(b',""', b"")
    if rest.startswith(b'"",') or rest == b'""':
        rest = rest[3:]
    rest = rest.replace(b'"(",', b"[").replace(b',")"', b"]").replace(b'")"', b"]")
    rest = rest.replace(b'"NIL"', b"null")
    if b'"nil"' in rest.lower():  # NIL in another case (quoted strings are not in yet)
        rest = _ANY_CASE_NIL.sub(b"null", rest)
    # A literal is a NaN, which the decoder hands to ``parse_constant`` in
    # document order: the literal (bytes) itself takes its place, not copied.
    rest = rest.replace(b'"\x00"', b"NaN")
    rest = _interleave(rest.split(b'"\x01"'), quoted)
    pending = iter(literals)
    try:
        values = json.loads(
            (b"[" + rest + b"]").decode("latin-1"),
            strict=False,
            parse_constant=lambda _nan: next(pending),
        )
    except (ValueError, RecursionError, StopIteration):
        return None  # (no StopIteration: there are no more NaN than literals)
    return values if isinstance(values, list) else None


def _plain_structure(rest: bytes, literal_count: int) -> bool:
    """Whether ``_fast_values`` reads ``rest`` (text with quoted strings cut out) exactly.

    When it does, ``_RESPONSE`` matches the text too: ``rest`` holds no
    quote (an unterminated quoted string, or one inside an atom) and no
    bracket but in ``[HEADER]``, and no quoted string is glued to an atom.
    """
    if b'"' in rest or b"a\x01" in rest.translate(_ATOMS_TO_A):
        return False
    brackets = rest.count(b"[HEADER]")
    if rest.count(b"[") != brackets or rest.count(b"]") != brackets:
        return False  # bracketed sections may hold spaces and quotes: general path
    if rest.count(b"\x00") > literal_count:
        return False
    # Balanced and at most _FAST_DEPTH deep: each pass drops the innermost
    # pairs (as many passes as the nesting is deep: 4 to 10 for real mail).
    parens = rest.translate(None, _NOT_PARENS)
    for _ in range(_FAST_DEPTH):
        if not parens:
            return True
        parens = parens.replace(b"()", b"")
    return not parens


def _interleave(pieces: list[bytes], between: list[bytes]) -> bytes:
    """pieces[0] + between[0] + pieces[1] + ... (one fewer ``between`` used than pieces)."""
    if len(pieces) == 1:
        return pieces[0]
    out = [b""] * (2 * len(pieces) - 1)
    out[0::2] = pieces
    out[1::2] = between[: len(pieces) - 1]
    return b"".join(out)


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
    return _responses(_values(text, literals))


def _responses(values: list[object]) -> list[tuple[int, dict[str, object]]]:
    """``parse_fetch_responses`` over tokens, strings as bytes or (fast path) latin-1 str."""
    found: list[tuple[int, dict[str, object]]] = []
    index = 0
    while index < len(values):
        number = values[index]
        if not isinstance(number, _STRINGS) or not _digits(number):
            raise BodyStructureError(f"expected a message number, got {number!r}")
        index += 1
        if index < len(values) and isinstance(values[index], _STRINGS):
            if _ascii_upper(values[index]) != "FETCH":
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
            if name.__class__ is str and name.isascii():  # the fast path's usual name
                pairs[name.upper()] = value
                continue
            if not isinstance(name, _STRINGS):
                raise BodyStructureError(f"message {number!r}: item name {name!r}")
            pairs[_ascii_upper(name)] = value
        found.append((int(number), pairs))
    return found


def _digits(value: bytes | str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes "²", which ``int`` refuses)."""
    return value.isdigit() and value.isascii()


def _ascii_upper(value: bytes | str) -> str:
    """``value`` as ASCII (others replaced), upper case; a str holds latin-1 bytes."""
    if isinstance(value, str):
        if value.isascii():
            return value.upper()
        value = value.encode("latin-1")
    return value.decode("ascii", "replace").upper()


def _fast_responses(data: Sequence[bytes | tuple[bytes, bytes]]) -> list[tuple[int, dict]]:
    """``parse_fetch_responses``, strings as latin-1 str and NIL as None where the fast path can."""
    text, literals = _join(data)
    values = _fast_values(text, literals)
    if values is not None:
        try:
            return _responses(values)
        except BodyStructureError:
            pass  # refused: the general path gives the same refusal, worded the same
    return _responses(_values(text, literals))


def fetched_structures(data: Sequence[bytes | tuple[bytes, bytes]]) -> list[FetchedStructure]:
    """The messages of a ``UID FETCH (UID RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER])`` answer.

    Responses without all four items (a server's unsolicited FLAGS update)
    and messages whose structure cannot be read are left out: the caller
    reads those whole.
    """
    out = []
    for _number, items in _fast_responses(data):
        uid, size = items.get("UID"), items.get("RFC822.SIZE")
        structure = items.get("BODYSTRUCTURE")
        header = items.get("BODY[HEADER]")
        if not (isinstance(uid, _STRINGS) and _digits(uid) and isinstance(size, _STRINGS)):
            continue
        if not isinstance(structure, list) or not isinstance(header, _STRINGS):
            continue
        try:
            parsed = parse_bodystructure(structure)
        except BodyStructureError:
            continue  # left out: that message is read whole
        flags = items.get("FLAGS")
        out.append(
            FetchedStructure(
                uid=int(uid),
                size=int(size) if _digits(size) else 0,
                structure=parsed,
                header=header.encode("latin-1") if isinstance(header, str) else header,
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
    return _body_part(
        section=section,
        content_type=f"multipart/{subtype}",
        params=MappingProxyType(params),
        encoding="",
        size=0,
        disposition=disposition,
        disposition_params=MappingProxyType(disposition_params),
        filename="",
        parts=tuple(children),
    )


def _single(value: list, *, section: str, depth: int) -> BodyPart:
    if len(value) < 7:
        raise BodyStructureError(f"body part {section}: {len(value)} fields, 7 at least")
    main, sub, encoding = value[0], value[1], value[5]
    # _text inlined for ASCII str tokens (the fast path's usual ones): this runs per part.
    main = (main if main.__class__ is str and main.isascii() else _text(main)).lower()
    sub = (sub if sub.__class__ is str and sub.isascii() else _text(sub)).lower()
    content_type = f"{main}/{sub}"
    params = _params(value[2])
    encoding = (
        encoding if encoding.__class__ is str and encoding.isascii() else _text(encoding)
    ).lower()
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
    # Single-part extension: MD5, disposition, language, location.
    if len(value) > extension + 1:
        disposition, disposition_params = _disposition(value[extension + 1])
    else:
        disposition, disposition_params = "", {}
    return _body_part(
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
    """A string token decoded as UTF-8 (bad bytes replaced); "" for NIL or a list.

    The fast path's tokens are str holding latin-1 bytes: ASCII ones are
    already what decoding would give.
    """
    if isinstance(value, str):
        return value if value.isascii() else value.encode("latin-1").decode("utf-8", "replace")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return ""


def _number(value: object) -> int:
    text = value if value.__class__ is str and value.isascii() else _text(value)
    return int(text) if text.isdigit() else 0


def _params(value: object) -> dict[str, str]:
    """Parameters as (lower-case name -> raw value), RFC 2231 pieces kept as sent."""
    if not isinstance(value, list):
        return {}
    if len(value) == 2:  # the usual single parameter ("charset" "utf-8")
        key, item = value
        key = (key if key.__class__ is str and key.isascii() else _text(key)).lower()
        if not key:
            return {}
        return {key: item if item.__class__ is str and item.isascii() else _text(item)}
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
    if not disposition and len(params) == 1 and "charset" in params:
        return ""  # the usual text part: no name to look for
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
    prefix = key + "*"  # what the pattern below asks of a piece of ``key``
    for name, value in params.items():
        if not name.startswith(prefix):
            continue
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
