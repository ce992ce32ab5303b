"""Hostile input through the whole pipeline: broken mail, hostile documents, injections.

Every input goes through ``Analyser.analyse`` (parse, classify, read the
documents in the sandboxed child) and must finish within the configured
limits without raising; then all of them are polled from Dovecot together:
each leaves a ledger row, and every message kept (filed, needs_review,
failed) has its raw bytes in the blob store. Replies built for the injection
attempts carry exactly the headers we put there.
"""

from __future__ import annotations

import base64
import email.policy
import io
import time
import zipfile
from collections.abc import Callable
from email.parser import BytesParser

import pytest
from sqlmodel import select

from mailbot.config import load_config
from mailbot.intake import poll_all
from mailbot.pipeline import Analyser
from storage.db import session_scope
from storage.models import Message, Outbox
from tests import corpus
from tests import faults as f
from tests.fixtures.config import SHIPPED_CONFIG

# Tighter than the shipped limits (60 s, 1 GB, 40 MB) to keep the suite fast.
LIMIT_ENV = {
    "MAILBOT_LIMITS__PARSE_TIMEOUT_SECONDS": "20",
    "MAILBOT_LIMITS__PARSE_CPU_SECONDS": "15",
    "MAILBOT_LIMITS__PARSE_MEMORY_MB": "768",
    "MAILBOT_LIMITS__OCR_TIMEOUT_SECONDS": "30",
    "MAILBOT_LIMITS__MAX_MESSAGE_BYTES": "4000000",
}
CONFIG = load_config(SHIPPED_CONFIG, environ=LIMIT_ENV)
LIMITS = CONFIG.settings.limits
# One message may hold several documents read one after the other: generous.
BUDGET = LIMITS.parse_timeout_seconds + LIMITS.ocr_timeout_seconds + 15

CANDIDATURE_BODY = (
    "Bonjour,\r\nVeuillez trouver ci-joint notre dossier d'intention pour le label "
    "Béthune Smart City et le courrier à Monsieur le Maire.\r\nCordialement\r\n"
)


def _headers(n: str, extra: str = "", subject: str | None = None) -> str:
    subject = subject or f"Candidature au label Smart City {n}"
    return (
        f"From: Porteur {n} <hostile.{n}@example.org>\r\n"
        "To: n.bataillon@ville-bethune.fr\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <hostile.{n}@example.org>\r\n"
        "Date: Tue, 24 Nov 2026 10:00:00 +0100\r\n"
        "MIME-Version: 1.0\r\n" + extra
    )


def with_attachment(n: str, filename: str, data: bytes, ctype: str) -> bytes:
    message = f.make_mail(
        subject=f"Candidature au label Béthune Smart City – hostile {n}",
        sender=f"Porteur {n} <hostile.{n}@example.org>",
        body=CANDIDATURE_BODY.replace("\r\n", "\n"),
        attachments=[(filename, data, ctype)],
        message_id=f"<hostile.{n}@example.org>",
    )
    return f.as_bytes(message)


# -- broken MIME ---------------------------------------------------------------------------------


def bad_boundary() -> bytes:
    return (
        _headers("bad-boundary", 'Content-Type: multipart/mixed; boundary="never"\r\n')
        + "\r\n--nope\r\nContent-Type: text/plain\r\n\r\n"
        + CANDIDATURE_BODY
    ).encode()


def unterminated_multipart() -> bytes:
    return (
        _headers("unterminated", 'Content-Type: multipart/mixed; boundary="b"\r\n')
        + "\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        + CANDIDATURE_BODY
        + "--b\r\nContent-Type: application/pdf; name=x.pdf\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK"
    ).encode()


def unknown_charsets() -> bytes:
    return (
        _headers(
            "charset",
            "Content-Type: text/plain; charset=x-klingon-8\r\n",
            subject="=?x-unknown?Q?Candidature_=E9t=E9?= label Smart City",
        ).encode()
        + b"\r\n\xe9t\xe9 dossier d'intention \xff\xfe pour le label\r\n"
    )


def raw_8bit_headers() -> bytes:
    return (
        b"From: J\xe9r\xf4me <jerome@example.org>\r\nTo: n.bataillon@ville-bethune.fr\r\n"
        b"Subject: Candidature \xe9t\xe9 \xff label Smart City\r\n"
        b"Message-ID: <hostile.8bit@example.org>\r\n\r\nDossier \xe9t\xe9\r\n"
    )


def megabyte_header() -> bytes:
    return (
        _headers("huge-header", "X-Huge: " + "a" * 1_000_000 + "\r\n") + "\r\n" + CANDIDATURE_BODY
    ).encode()


def ten_thousand_recipients() -> bytes:
    to = ",\r\n ".join(f"r{i}@example.org" for i in range(10_000))
    return (_headers("recipients", f"Cc: {to}\r\n") + "\r\n" + CANDIDATURE_BODY).encode()


def five_thousand_headers() -> bytes:
    extra = "".join(f"X-Header-{i}: value {i}\r\n" for i in range(5000))
    return (_headers("headers", extra) + "\r\n" + CANDIDATURE_BODY).encode()


def deep_rfc822_nesting() -> bytes:
    inner = (_headers("inner") + "\r\n" + CANDIDATURE_BODY).encode()
    for depth in range(40):
        inner = (
            f"From: relay{depth}@example.org\r\nTo: n.bataillon@ville-bethune.fr\r\n"
            f"Subject: TR: candidature {depth}\r\nMessage-ID: <nest.{depth}@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
        ).encode() + inner
    return inner


def deep_multipart_nesting() -> bytes:
    body = CANDIDATURE_BODY
    for depth in range(200):
        body = (
            f'Content-Type: multipart/mixed; boundary="d{depth}"\r\n\r\n--d{depth}\r\n'
            + body
            + f"\r\n--d{depth}--\r\n"
        )
    return (_headers("deep-multipart") + body).encode()


def thousand_parts() -> bytes:
    parts = "".join(f"--p\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(1000))
    return (
        _headers("parts", 'Content-Type: multipart/mixed; boundary="p"\r\n')
        + "\r\n"
        + parts
        + "--p--\r\n"
    ).encode()


def broken_base64() -> bytes:
    return (
        _headers("base64", 'Content-Type: multipart/mixed; boundary="b"\r\n')
        + "\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        + CANDIDATURE_BODY
        + '--b\r\nContent-Type: application/pdf; name="dossier.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n!!!not*base64===\r\nJVBER\r\n--b--\r\n"
    ).encode()


def unknown_transfer_encoding() -> bytes:
    return (
        _headers("cte", "Content-Type: text/plain\r\nContent-Transfer-Encoding: x-rot13\r\n")
        + "\r\n"
        + CANDIDATURE_BODY
    ).encode()


def nul_and_bare_cr() -> bytes:
    return (
        b"From: nul@example.org\r\nTo: n.bataillon@ville-bethune.fr\r\n"
        b"Subject: Candidature\x00label\rSmart\x0bCity\r\nMessage-ID: <hostile.nul@example.org>\r\n"
        b"\r\ndossier\x00d'intention\r"
    )


def missing_ids_and_bad_date() -> bytes:
    return (
        b"From: nodate@example.org\r\nTo: n.bataillon@ville-bethune.fr\r\n"
        b"Subject: Candidature label Smart City sans identifiant\r\n"
        b"Date: the day after tomorrow, 99:99\r\n\r\ndossier d'intention\r\n"
    )


def headers_only() -> bytes:
    return _headers("headers-only").encode()


def random_bytes() -> bytes:
    import random

    return random.Random(2026).randbytes(20_000)


def oversized_message() -> bytes:
    big = bytes(5_000_000)
    return with_attachment("oversized", "annexe.bin", big, "application/octet-stream")


def many_attachments() -> bytes:
    message = f.make_mail(
        subject="Candidature au label Béthune Smart City – 80 pièces",
        sender="Porteur many <hostile.many@example.org>",
        body=CANDIDATURE_BODY.replace("\r\n", "\n"),
        attachments=[(f"piece{i}.bin", bytes([i]) * 10, "application/x-thing") for i in range(80)],
        message_id="<hostile.many@example.org>",
    )
    return f.as_bytes(message)


# -- header injection --------------------------------------------------------------------------


def _b64_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


INJECTED_SENDER = "jean.inject@example.org"


def header_injection() -> bytes:
    """CR/LF, NUL and U+2028 smuggled through encoded words in Subject and From."""
    subject = _b64_word("Candidature label Smart City\r\nBcc: victim@evil.example\u2028X: y\x00")
    name = _b64_word("Jean\r\nBcc: evil@evil.example\r\nX-Injected: 1")
    return (
        f"From: {name} <{INJECTED_SENDER}>\r\nTo: n.bataillon@ville-bethune.fr\r\n"
        f"Subject: {subject}\r\nMessage-ID: <hostile.inject@example.org>\r\n"
        "Date: Tue, 24 Nov 2026 10:00:00 +0100\r\n"
        "References: <ok@example.org>\r\n\tBcc: evil@evil.example\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + CANDIDATURE_BODY
    ).encode()


def crlf_in_filename() -> bytes:
    return (
        _headers("filename", 'Content-Type: multipart/mixed; boundary="b"\r\n')
        + "\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        + CANDIDATURE_BODY
        + "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
        "filename*=utf-8''..%2F..%2Fetc%2Fcron.d%2Fx%0D%0ABcc%3A%20evil%00.pdf\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
    ).encode()


# -- hostile attachments -------------------------------------------------------------------------


def no_tounicode_pdf() -> bytes:
    """Text shown with an Identity-H CID font that has no ToUnicode map (and no font file)."""
    glyphs = b"".join(b"%04X" % (n * 7 % 600 + 3) for n in range(60))
    content = b"BT /F1 14 Tf 72 760 Td <" + glyphs + b"> Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /ABCDEF+NoUnicode /Encoding /Identity-H "
        b"/DescendantFonts [6 0 R] >>",
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /ABCDEF+NoUnicode "
        b"/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /DW 500 >>",
    ]
    return corpus._assemble_pdf(objects)


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.bin", "w") as member,
    ):
        chunk = bytes(1 << 20)
        for _ in range(400):
            member.write(chunk)
    return buffer.getvalue()


def zip_traversal() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("../../../etc/passwd", "/etc/shadow", "..\\..\\win.ini", "ok/dossier.txt"):
            archive.writestr(name, b"Intitule de l'action : traversee")
    return buffer.getvalue()


def zip_in_zip() -> bytes:
    inner = zip_traversal()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(150):
            archive.writestr(f"nested{i}.zip", inner)
    return buffer.getvalue()


HOSTILE_DOCS = corpus.hostile_files(f.rules())

Builder = Callable[[], bytes]
CASES: dict[str, Builder] = {
    # broken MIME and classic broken mail
    "bad-boundary": bad_boundary,
    "unterminated-multipart": unterminated_multipart,
    "unknown-charsets": unknown_charsets,
    "raw-8bit-headers": raw_8bit_headers,
    "1MB-header": megabyte_header,
    "10000-recipients": ten_thousand_recipients,
    "5000-headers": five_thousand_headers,
    "rfc822-nested-40-deep": deep_rfc822_nesting,
    "multipart-nested-200-deep": deep_multipart_nesting,
    "1000-mime-parts": thousand_parts,
    "broken-base64": broken_base64,
    "unknown-transfer-encoding": unknown_transfer_encoding,
    "nul-and-bare-cr": nul_and_bare_cr,
    "no-message-id-bad-date": missing_ids_and_bad_date,
    "headers-only": headers_only,
    "random-bytes": random_bytes,
    "oversized-5MB": oversized_message,
    "80-attachments": many_attachments,
    # injection
    "header-injection": header_injection,
    "crlf-traversal-filename": crlf_in_filename,
    # hostile documents
    "pdf-no-tounicode": lambda: with_attachment(
        "font", "dossier.pdf", no_tounicode_pdf(), "application/pdf"
    ),
    "zip-bomb": lambda: with_attachment("zipbomb", "dossier.zip", zip_bomb(), "application/zip"),
    "zip-path-traversal": lambda: with_attachment(
        "ziptrav", "pieces.zip", zip_traversal(), "application/zip"
    ),
    "zip-150-nested-zips": lambda: with_attachment(
        "zipzip", "pieces.zip", zip_in_zip(), "application/zip"
    ),
    "filename-traversal": lambda: with_attachment(
        "nametrav", "../../../etc/passwd", b"root:x:0:0", "application/octet-stream"
    ),
}
for _name, (_filename, _build) in HOSTILE_DOCS.items():
    CASES[f"doc-{_name}"] = lambda n=_name, fn=_filename, b=_build: with_attachment(
        f"doc-{n}",
        fn,
        b(),
        "application/pdf" if fn.endswith(".pdf") else "application/octet-stream",
    )


@pytest.fixture(scope="module")
def analyser() -> Analyser:
    return Analyser(CONFIG)


def _clean(text: str) -> bool:
    return not any(c in text for c in "\r\n\x00\u2028\u2029")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_analysed_within_limits(name, analyser, capsys):
    raw = CASES[name]()
    started = time.monotonic()
    analysis = analyser.analyse(raw, mailbox=f.NB)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\n[hostile] {name}: {len(raw):,} B in {elapsed:.2f} s -> "
            f"{analysis.verdict or 'failed'}; {len(analysis.warnings)} warnings"
        )
    assert elapsed < BUDGET
    if analysis.mail is not None:
        assert analysis.mail.sha256 == __import__("hashlib").sha256(raw).hexdigest()
        assert _clean(analysis.mail.subject)
        assert _clean(analysis.mail.sender) and _clean(analysis.mail.sender_name)
        for attachment in analysis.mail.attachments:
            assert "/" not in attachment.filename and "\\" not in attachment.filename
            assert _clean(attachment.filename)
    if analysis.mail is None or analysis.mail.over_limits:
        assert analysis.warnings or analysis.error


@pytest.mark.timeout(600)
def test_hostile_inputs_polled_are_all_kept(service_env, monkeypatch, dovecot, capsys):
    for key, value in LIMIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MAILBOT_REPLIES__GLOBAL_HOURLY_CAP", "100000")
    from mailbot.app import App

    app = App(service_env["MAILBOT_CONFIG"])
    raws = [CASES[name]() for name in CASES]
    dovecot.fill_maildir(f.NB, raws)
    started = time.monotonic()
    reports = poll_all(app)
    elapsed = time.monotonic() - started
    assert all(r.error is None for r in reports), [r.error for r in reports]
    with session_scope(app.engine) as session:
        messages = list(session.exec(select(Message)).all())
        outbox = list(session.exec(select(Outbox)).all())
    statuses = {m.status for m in messages}
    kept = [m for m in messages if m.status in ("filed", "needs_review", "failed")]
    with capsys.disabled():
        print(
            f"\n[reliability] hostile inputs: {len(CASES)} polled in {elapsed:.1f} s -> "
            f"{len(messages)} ledger rows, statuses {sorted(statuses)}, {len(kept)} kept raw, "
            f"{len(outbox)} replies planned"
        )
    # Nothing lost: one ledger row per distinct message (two cases share no id).
    assert len(messages) == len(CASES)
    assert sum(r.new for r in reports) == len(CASES)
    for message in kept:
        assert message.raw_blob is not None, message.subject
        assert app.blobs.exists(message.raw_blob)
        assert _clean(message.subject)
    # Nothing written outside the blob store from a file name.
    assert not (app.config.blob_dir.parent / "etc").exists()
    # Replies: exactly our headers, the sender's address, nothing smuggled in.
    for row in outbox:
        reply = BytesParser(policy=email.policy.default).parsebytes(row.raw)
        assert reply["Bcc"] is None and reply["X-Injected"] is None
        assert reply["To"] == row.to_addr
        for name, value in reply.items():
            assert _clean(str(value)), (name, value)
    injected = [o for o in outbox if o.to_addr == INJECTED_SENDER]
    for row in injected:
        assert b"evil@evil.example" not in row.raw.split(b"\r\n\r\n", 1)[0]
    # A second pass finds nothing new.
    assert sum(r.new for r in poll_all(app)) == 0
    app.close()


def test_an_empty_attachment_is_named_in_the_warnings(analyser):
    raw = with_attachment("empty", "dossier_intention.pdf", b"", "application/pdf")
    analysis = analyser.analyse(raw, mailbox=f.NB)
    assert analysis.mail is not None and analysis.mail.attachments[0].size == 0
    assert any("dossier_intention.pdf" in w for w in analysis.warnings), analysis.warnings


def test_pdfminer_has_the_pickle_cmap_fix():
    """CVE-2025-64512 (pickled CMaps) is fixed from pdfminer.six 20251107."""
    import importlib.metadata

    assert int(importlib.metadata.version("pdfminer.six")) >= 20251107
