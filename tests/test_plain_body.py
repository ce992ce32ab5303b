"""``parsers.mail.plain_body`` reads a plain text/plain message as the MIME parser does.

The whole ``ParsedMail`` (text, content types, attachments, forwarding,
warnings, over-limits flag...) is the same with and without the plain
reading, read whole and read after ``read_head`` (as intake does), on
generated single-part messages that probe the edges of the plain shape
(charsets, transfer encodings, parameters, folding, CRLF/LF and lone CR,
broken base64 and quoted-printable, invalid bytes, odd header lines,
forward markers, tight limits) and on the golden, hostile, seed, mutated
and bench corpora. The plain reading is also shown to be taken for the
bench's everyday text mail, and refused for the shapes it does not read.
"""

from __future__ import annotations

import base64
import quopri
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.harness import everyday_messages
from parsers.mail import message as message_module
from parsers.mail import parse_message, plain_body, read_head
from parsers.mail.headers import header_block
from tests.fixtures.hostile_mail import CASES
from tests.fixtures.mutations import LIMITS, PROPERTY_SETTINGS, SEEDS, mutated, parsed_fields

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.eml"))
TIGHT = LIMITS.model_copy(
    update={"max_header_count": 10, "max_header_bytes": 1024, "max_message_bytes": 1024}
)
EVERYDAY = everyday_messages(6)


def _readings(raw: bytes, limits: object) -> tuple[object, object]:
    """The message read whole, and read after its header block was read alone."""
    whole = parsed_fields(raw) if limits is LIMITS else _fields(raw, limits, head=None)
    header = header_block(raw)
    rest = raw[len(header) :]
    header += b"\r\n" if rest.startswith(b"\r\n") else b"\n" if rest.startswith(b"\n") else b""
    if not header or b"\n" not in header:
        return whole, None
    head = read_head(header, size=len(raw), limits=limits)
    return whole, _fields(raw, limits, head=head)


def _fields(raw: bytes, limits: object, *, head: object) -> object:
    parsed = parse_message(raw, limits=limits, head=head)
    return {**parsed.__dict__, "headers": dict(parsed.headers)}


def _both_ways(raw: bytes, limits: object = LIMITS) -> tuple[object, object]:
    ours = _readings(raw, limits)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plain_body, "PLAIN_BODY", False)
        full = _readings(raw, limits)
    return ours, full


def _taken(raw: bytes) -> bool:
    """Whether ``parse_message`` reads ``raw``'s body the plain way."""
    calls: list[bool] = []
    real = message_module.read_plain_body

    def counting(*args: object, **kwargs: object) -> bool:
        calls.append(real(*args, **kwargs))
        return calls[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(message_module, "read_plain_body", counting)
        parse_message(raw, limits=LIMITS)
    return calls == [True]


# --------------------------------------------------------------------------
# Generated single-part messages
# --------------------------------------------------------------------------

PLAIN_TYPES = st.sampled_from(
    [
        None,
        "text/plain",
        "text/plain; charset=utf-8",
        "text/plain; charset=UTF-8",
        'text/plain; charset="utf-8"',
        "text/plain; charset=us-ascii",
        "text/plain; charset=ascii",
        "text/plain; charset=iso-8859-1",
        "text/plain; charset=ISO-8859-15",
        "text/plain; charset=windows-1252",
        "text/plain; charset=latin1",
        "text/plain; charset=utf8",
        "text/plain; charset=utf-8; format=flowed",
        'text/plain; charset="UTF-8"; format=flowed; delsp=yes',
        "text/plain; format=flowed",
        "text/plain;\r\n\tcharset=utf-8",
        'text/plain;\r\n charset="iso-8859-1"',
        "text/plain ; charset = utf-8 ;",
        "text/plain;",
        "TEXT/PLAIN; CHARSET=UTF-8",
        "  text/plain;charset=utf-8",
    ]
)
ODD_TYPES = st.sampled_from(
    [
        "text/plain; charset=",
        'text/plain; charset=""',
        'text/plain; charset="utf-8',
        "text/plain; charset=utf-8; charset=iso-8859-1",
        "text/plain; charset=utf-16",
        "text/plain; charset=koi8-r",
        "text/plain; charset=x-unknown",
        "text/plain; charset=unknown-8bit",
        "text/plain; charset=utf-8 (comment)",
        "text/plain; charset*=utf-8''x",
        "text/plain; name=note.txt",
        'text/plain; charset=utf-8; name="note.txt"',
        "text/plain/x",
        "text",
        "",
        "text/html; charset=utf-8",
        "text/calendar; method=REQUEST",
        "application/octet-stream",
        "multipart/mixed",
        'multipart/mixed; boundary="b"',
        "message/rfc822",
        "text/plain; charset=utf-8\x0b",
        "text/plain; charset=utf-8\u00e9",
    ]
)
PLAIN_ENCODINGS = st.sampled_from(
    [None, "7bit", "8bit", "binary", "quoted-printable", "Quoted-Printable", "base64", "BASE64"]
)
ODD_ENCODINGS = st.sampled_from(
    [
        "base64 ",
        "\r\n base64",
        "x-uuencode",
        "uue",
        "x-token",
        "",
    ]
)
PLAIN_DISPOSITIONS = st.sampled_from([None, None, "inline", "INLINE "])
ODD_DISPOSITIONS = st.sampled_from(
    [
        "attachment",
        "inline; filename=note.txt",
        'attachment; filename="note.txt"',
        "inline;",
        "",
    ]
)
CHARSETS = st.sampled_from(["utf-8", "iso-8859-1", "cp1252", "ascii", "utf-16"])
TEXT = st.lists(
    st.sampled_from(
        [
            *"abc XYZ019.,;:=-_>",
            *("é", "à", "€", "œ", "\n", "\r", "\r\n", "\t", "\x00"),
            *("\u2028", "\u2029", "\x85", "e\u0301", "\ufeff", "日本", "\U0001f600"),
        ]
    ),
    max_size=300,
).map("".join)
SPECIAL_BODIES = st.sampled_from(
    [
        "",
        "\n",
        "\r\n\r\n",
        "Bonjour,\n\n---------- Forwarded message ---------\nDe : Jean <jean@example.fr>\n",
        "Voir ci-dessous.\nBegin forwarded message:\nFrom: Chloé Dupont <chloe@asso.fr>\n",
        "-------- Message transféré --------\nrien\n",
        "From the start of the body\nbody\n",
        "x" * 5000,
        ("ligne " * 40 + "\n") * 50,
        "a=\nb=3D=C3=A9=\r\nc=XY=\n=",
        "QmV0aHVuZQ==\n",
        "QmV0aHVuZQ\n",
        "QmV0a*HVuZQ==\n",
        "QmV0aHVuZ===\n",
        "Q\n",
        "====\n",
        "--b\nContent-Type: text/plain\n\nx\n--b--\n",
        "\x00\x01\x7f control\n",
    ]
)
PLAIN_HEADERS = st.sampled_from(
    [
        "X-Mailer: Thunderbird",
        "Content-Language: fr",
        "Content-ID: <part@x>",
        "Content-Description: note",
        "X-Folded: a\r\n b",
        "X-Empty:",
        "X-8bit: Béthune",
        "References: <a@b>\r\n\t<c@d>",
    ]
)
ODD_HEADERS = st.sampled_from(
    [
        "content-type: text/html",
        "Content-Type: text/plain; charset=iso-8859-1",
        "Content-Transfer-Encoding: base64",
        "Content-Disposition: attachment",
        "From mbox line",
        ": no name",
        "Content-Type : text/html",
        "no colon at all",
        "Content-Language: " + "x" * 9000,
        "X-Lone-CR: a\rb",
    ]
)
SUBJECTS = st.sampled_from(["Compte rendu", "Fwd: dossier", "TR: dossier", "Re: rdv", "é=?x"])


@st.composite
def body_bytes(draw, cte: str | None) -> bytes:
    """A body as written on the wire for ``cte``, sometimes mangled."""
    special = draw(st.booleans())
    text = draw(SPECIAL_BODIES if special else TEXT)
    if draw(st.integers(0, 9)) == 0:
        data = draw(st.binary(max_size=200))
    else:
        data = text.encode(draw(CHARSETS), "replace")
    kind = (cte or "").strip().lower()
    if not special and kind == "quoted-printable" and draw(st.booleans()):
        data = quopri.encodestring(data)
    elif not special and kind == "base64" and draw(st.booleans()):
        data = base64.encodebytes(data)
        if data and draw(st.booleans()):
            data = data.rstrip(b"=\n") + draw(st.sampled_from([b"", b"\n", b"*\n", b"!!"]))
    return data


@st.composite
def either(draw, plain: st.SearchStrategy, odd: st.SearchStrategy) -> object:
    """Mostly a plain value, sometimes one just outside the plain shape."""
    return draw(odd if draw(st.integers(0, 4)) == 0 else plain)


@st.composite
def single_part(draw) -> bytes:
    """A single-part message, plain or just outside the plain shape."""
    cte = draw(either(PLAIN_ENCODINGS, ODD_ENCODINGS))
    lines = [
        "From: Sophie Durand <s.durand@ville-bethune.fr>",
        "To: n.bataillon@ville-bethune.fr",
        f"Subject: {draw(SUBJECTS)}",
        "Date: Tue, 24 Nov 2026 10:00:00 +0100",
        "Message-ID: <plain.1@ville-bethune.fr>",
        "MIME-Version: 1.0",
    ]
    for name, value in (
        ("Content-Type", draw(either(PLAIN_TYPES, ODD_TYPES))),
        ("Content-Transfer-Encoding", cte),
        ("Content-Disposition", draw(either(PLAIN_DISPOSITIONS, ODD_DISPOSITIONS))),
    ):
        if value is not None:
            lines.append(f"{name}: {value}")
    extra = draw(st.lists(either(PLAIN_HEADERS, ODD_HEADERS), max_size=3))
    lines[draw(st.integers(0, len(lines))) : 0] = extra
    if draw(st.booleans()):
        lines = draw(st.permutations(lines))
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    head = "".join(line.replace("\r\n", eol) + eol for line in lines)
    separator = draw(either(st.just(eol), st.sampled_from(["\r\r\n", "", " \n", "\r"])))
    raw = head.encode("utf-8") + separator.encode() + draw(body_bytes(cte))
    if eol == "\n" and draw(st.integers(0, 3)) == 0:
        raw = raw.replace(b"\n", b"\r\n")  # headers LF, body CRLF and the other way
    return raw


@PROPERTY_SETTINGS
@given(single_part())
def test_plain_reading_is_the_mime_parsers_on_generated_messages(raw):
    ours, full = _both_ways(raw)
    assert ours == full


@PROPERTY_SETTINGS
@given(single_part())
def test_plain_reading_is_the_mime_parsers_under_tight_limits(raw):
    ours, full = _both_ways(raw, TIGHT)
    assert ours == full


@st.composite
def mutated_everyday(draw) -> bytes:
    raw = bytearray(draw(st.sampled_from([m for n, m in enumerate(EVERYDAY) if n % 3])))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(raw) - 1))
        insert = draw(
            st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b":", b"\xff", b"=", b";", b'"'])
            | st.binary(max_size=8)
        )
        raw[at : at + draw(st.integers(0, 3))] = insert
    return bytes(raw)


@PROPERTY_SETTINGS
@given(mutated_everyday())
def test_plain_reading_is_the_mime_parsers_on_mutated_everyday_mail(raw):
    ours, full = _both_ways(raw)
    assert ours == full


@PROPERTY_SETTINGS
@given(mutated())
def test_plain_reading_is_the_mime_parsers_on_mutated_candidatures(raw):
    ours, full = _both_ways(raw)
    assert ours == full


# --------------------------------------------------------------------------
# Corpora
# --------------------------------------------------------------------------


def _corpus() -> dict[str, bytes]:
    mails = {path.name: path.read_bytes() for path in GOLDEN}
    mails.update({f"hostile:{name}": build() for name, build in CASES.items()})
    mails.update({f"seed:{n}": raw for n, raw in enumerate(SEEDS)})
    mails.update({f"everyday:{n}": raw for n, raw in enumerate(EVERYDAY)})
    return mails


CORPUS = _corpus()


@pytest.mark.parametrize("name", list(CORPUS))
def test_plain_reading_is_the_mime_parsers_on_the_corpus(name):
    ours, full = _both_ways(CORPUS[name])
    assert ours == full


def test_the_everyday_text_mail_is_read_the_plain_way():
    """Not a vacuous comparison: colleagues' notes and replies take the plain reading."""
    assert [_taken(raw) for raw in EVERYDAY] == [False, True, True] * 2
    assert any(_taken(path.read_bytes()) for path in GOLDEN)


PLAIN = (
    b"From: a@example.fr\r\nSubject: x\r\nContent-Type: %s\r\n"
    b"Content-Transfer-Encoding: %s\r\n\r\nBonjour =C3=A9\r\n"
)


@pytest.mark.parametrize(
    ("ctype", "cte"),
    [
        (b"text/plain; charset=utf-8", b"quoted-printable"),
        (b'text/plain;\r\n\tcharset="ISO-8859-15"; format=flowed', b"8bit"),
        (b"text/plain", b"base64"),
        (b"text/plain;", b"7bit"),
    ],
)
def test_plain_shapes_are_read_the_plain_way(ctype, cte):
    assert _taken(PLAIN % (ctype, cte))


@pytest.mark.parametrize(
    ("ctype", "cte"),
    [
        (b"text/html; charset=utf-8", b"8bit"),
        (b"text/plain; charset=koi8-r", b"8bit"),
        (b"text/plain; name=a.txt", b"8bit"),
        (b"text/plain; charset=utf-8; charset=utf-8", b"8bit"),
        (b"text/plain; charset=utf-8", b"x-uuencode"),
        (b"text/plain; charset=utf-8\r\nContent-Type: text/html", b"8bit"),
        (b"text/plain; charset=utf-8\r\nContent-Disposition: attachment", b"8bit"),
        (b"text/plain; charset=utf-8\r\nX-Odd: a\rb", b"8bit"),
        (b"multipart/mixed; boundary=b", b"8bit"),
    ],
)
def test_other_shapes_are_left_to_the_mime_parser(ctype, cte):
    raw = PLAIN % (ctype, cte)
    assert not _taken(raw)
    ours, full = _both_ways(raw)
    assert ours == full
