"""What one message is, read without writing anything: parse, classify, read.

``analyse()`` is shared by the worker (which then files the result) and by
``mailbot try`` (which only prints it), so what admins test is exactly what
the service does. ``after_reading()`` runs the chain's second stage (rules
that need the reading and the database, see ``parsers.classify``) with the
look-up its caller gives: the worker's filing transaction or ``try``'s
read-only database. Nothing here touches the database itself, the blob
store or the network.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailbot.config import Config, Verdict
from parsers.addresses import normalise_address
from parsers.checks import attachment_roles, describe_missing, missing_pieces
from parsers.classify import (
    Classification,
    Classifier,
    ClassifyContext,
    OpenDossiers,
    ReadingFacts,
    RuleHit,
    RuleResult,
)
from parsers.documents import DocumentText, extract_documents
from parsers.dossier import DossierReading, read_dossier
from parsers.dossier.body_answers import read_body_answers
from parsers.headers_first import decide_from_headers, plain_header_block, reusable_results
from parsers.letter import LetterFinding, find_letter
from parsers.mail import HeadReading, bounds, header_text, parse_message, parse_spooled, read_head
from parsers.mail.bodystructure import BodyPart
from parsers.reasons import ReviewReason
from parsers.types import Attachment, ParsedMail, SpooledData

if TYPE_CHECKING:
    from storage.blobs import BlobStore

log = logging.getLogger(__name__)

# Content types worth reading as documents (the rest is kept as supporting files).
_DOCUMENT_TYPES = (
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/msword",
    "application/octet-stream",
    "image/",
    "text/plain",
)


@dataclass(frozen=True)
class Reading:
    """The documents of a candidature read: dossier fields, letter, roles, what is missing."""

    documents: tuple[DocumentText, ...]
    dossier: DossierReading
    letter: LetterFinding
    roles: dict[str, str]
    missing: tuple[str, ...]
    missing_text: tuple[str, ...]
    warnings: tuple[str, ...]
    needs_review: bool
    # The message's reading budget ([limits] message_*_seconds) ran out.
    over_budget: bool = False
    # The dossier was read, but required fields only with doubt, and nothing
    # else needs a person: the dossier is filed and waits for staff, the
    # applicant gets a neutral acknowledgement (issue 15).
    in_doubt: bool = False
    # Field values the applicant typed in the body (``Lieu : …``, values
    # under our quoted notice): what a follow-up may fill.
    answers: DossierReading | None = None

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self.dossier.fields)

    @property
    def dossier_present(self) -> bool:
        return self.dossier.dossier_sha256 is not None

    @property
    def letter_present(self) -> bool:
        return self.letter.letter_sha256 is not None

    @property
    def facts(self) -> ReadingFacts:
        """What the chain's reading rules look at."""
        title = str(self.dossier.fields.get("intitule") or "")
        return ReadingFacts(dossier_present=self.dossier_present, title=title)


@dataclass(frozen=True)
class Analysis:
    raw: bytes
    mailbox: str
    mail: ParsedMail | None
    classification: Classification | None
    reading: Reading | None
    verdict: str | None
    error: str | None = None
    warnings: tuple[str, ...] = field(default=())
    # Why it failed (PARSE_ERROR, ANALYSIS_ERROR, FILING_ERROR); ``error`` is the detail.
    failure: ReviewReason | None = None
    # The whole message's size when ``raw`` is only its header block (the
    # first pass decided without the body, see ``Analyser.decide_from_headers``).
    whole_size: int | None = None
    # Where the raw message was spooled when ``raw`` is left empty so that
    # the worker does not hold it (``Analyser.analyse_file``).
    raw_path: Path | None = None

    @property
    def size(self) -> int:
        """Size of the message as received (not of what was fetched of it)."""
        return len(self.raw) if self.whole_size is None else self.whole_size

    def raw_bytes(self) -> bytes:
        """The raw message (read back from the spool when it was spooled)."""
        if self.raw_path is not None and not self.raw:
            return self.raw_path.read_bytes()
        return self.raw

    @property
    def failed(self) -> bool:
        return self.error is not None


# Where ``Analyser.decide_from_headers`` notes its rules' answers in a ``HeadReading``.
_RULES_NOTE = "first-pass rules"


class _Answered:
    """A rule of the chain whose answer on this message is known (``Analyser._classify``)."""

    __slots__ = ("_result", "name")

    def __init__(self, name: str, result: RuleResult) -> None:
        self.name = name
        self._result = result

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        return self._result


class Analyser:
    """Reusable: compiles the rules once for many messages."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.classifier = Classifier(config.rules.detection)
        # The context of a message without attachment texts, by mailbox (see _context).
        self._contexts: dict[str, ClassifyContext] = {}

    def analyse_file(
        self, path: Path, *, mailbox: str, head: HeadReading | None = None
    ) -> Analysis:
        """``analyse`` of a spooled message, never holding it or a big attachment whole.

        It is parsed from its file (``parse_spooled``): the returned analysis names
        ``path`` (``raw_path``) and its ``raw`` is empty; filing reads the
        file (``Analysis.raw_bytes``). Big attachments stay in files beside
        it, which filing stores from (``store_attachment``). The caller deletes
        them all with ``remove_spooled`` once the message is filed.
        """
        size = path.stat().st_size
        parts = _PartFiles(path)
        try:
            # The parser reads the file window by window and decodes long
            # base64 attachments straight into files beside it (``parts``).
            mail = self._parse(
                lambda: parse_spooled(
                    path, limits=self.config.settings.limits, head=head, spool=parts.new
                ),
                mailbox=mailbox,
                raw=b"",
            )
            if isinstance(mail, Analysis):
                parts.remove()
                return replace(mail, raw_path=path, whole_size=size)
            # Big attachments the parser decoded in memory (a defect in their
            # base64, a guessed boundary) wait in files too, while the
            # sandbox child reads them (it reads the files itself) and until
            # they are filed (stored from their files).
            mail = replace(mail, attachments=tuple(_spool_big(a, parts) for a in mail.attachments))
            # The parse of a big message leaves freed memory in the heap: give
            # it back before a child starts.
            release_freed_memory()
            analysis = self._analyse_checked(b"", mail, mailbox, head=head)
        except BaseException:
            parts.remove()
            raise
        return replace(analysis, raw_path=path, whole_size=size)

    def analyse(self, raw: bytes, *, mailbox: str, head: HeadReading | None = None) -> Analysis:
        """Parse, classify and read one message; ``head``: its header block read already."""
        limits = self.config.settings.limits
        mail = self._parse(
            lambda: parse_message(raw, limits=limits, head=head), mailbox=mailbox, raw=raw
        )
        if isinstance(mail, Analysis):
            return mail
        return self._analyse_checked(raw, mail, mailbox, head=head)

    def _parse(
        self, parse: Callable[[], ParsedMail], *, mailbox: str, raw: bytes
    ) -> ParsedMail | Analysis:
        """The parsed message, or the failed analysis of one that cannot be parsed."""
        try:
            return parse()
        except OSError:
            raise  # the spooled file cannot be read: the poll fails, the message is fetched again
        except Exception as err:  # any parser bug must quarantine, not stop the poll
            log.exception("cannot parse a message from %s", mailbox)
            return Analysis(
                raw=raw,
                mailbox=mailbox,
                mail=None,
                classification=None,
                reading=None,
                verdict=None,
                error=f"parse error: {err!r}",
                failure=ReviewReason.PARSE_ERROR,
            )

    def _analyse_checked(
        self, raw: bytes, mail: ParsedMail, mailbox: str, *, head: HeadReading | None = None
    ) -> Analysis:
        try:
            return self._analyse_parsed(raw, mail, mailbox, head=head)
        except Exception as err:
            log.exception("cannot analyse message %s from %s", mail.message_id, mailbox)
            return Analysis(
                raw=raw,
                mailbox=mailbox,
                mail=mail,
                classification=None,
                reading=None,
                verdict=None,
                error=f"analysis error: {err!r}",
                failure=ReviewReason.ANALYSIS_ERROR,
            )

    def read_head(self, header: bytes, *, size: int) -> HeadReading | None:
        """The header block fetched alone, read; None when it is too odd to rely on.

        The server finds the end of the header block with its own parser: only
        a block of plain fields (``plain_header_block``) is read alone.
        """
        if not plain_header_block(header):
            return None
        try:
            return read_head(header, size=size, limits=self.config.settings.limits)
        except Exception:  # the whole read decides, and reports the problem
            log.exception("cannot read a header block alone")
            return None

    def decide_from_headers(
        self, header: bytes | HeadReading | None, *, structure: BodyPart, size: int, mailbox: str
    ) -> Analysis | None:
        """The analysis of a message the headers settle (nothing kept), else None.

        ``header`` is the message's header block (or ``read_head``'s reading
        of it), ``structure`` its BODYSTRUCTURE and ``size`` its RFC822.SIZE,
        as the server gave them. None means: fetch the whole message and
        ``analyse`` it. The verdict given is the one ``analyse`` would give
        (``parsers.headers_first``).
        """
        if isinstance(header, bytes):
            header = self.read_head(header, size=size)
        if header is None:
            return None
        head = header.mail
        ctx = self._context(mailbox)
        results: dict[str, RuleResult] = {}
        # Kept for the whole message's classification (``_classify``).
        header.notes[_RULES_NOTE] = (self.classifier, ctx, results)
        try:
            classification = decide_from_headers(
                head, structure=structure, classifier=self.classifier, ctx=ctx, results=results
            )
        except Exception:  # the whole read decides, and reports the problem
            log.exception("cannot decide from the headers of a message from %s", mailbox)
            return None
        if classification is None:
            return None
        return Analysis(
            raw=header.header,
            mailbox=mailbox,
            mail=head,
            classification=classification,
            reading=None,
            verdict=str(classification.verdict),
            warnings=tuple(head.warnings),
            whole_size=size,
        )

    def _context(self, mailbox: str, texts: Sequence[str] = ()) -> ClassifyContext:
        if texts:
            return ClassifyContext.from_config(self.config, mailbox=mailbox, attachment_texts=texts)
        # Most messages are classified without attachment texts: their context
        # (frozen, its own addresses folded) is built once per mailbox.
        ctx = self._contexts.get(mailbox)
        if ctx is None:
            ctx = ClassifyContext.from_config(self.config, mailbox=mailbox)
            self._contexts[mailbox] = ctx
        return ctx

    def _classify(self, mail: ParsedMail, mailbox: str, head: HeadReading | None) -> Classification:
        """``classifier.classify`` of ``mail``, without running again what the first pass ran.

        The rules ``decide_from_headers`` ran on the header block of this
        message (``head``), with this classifier and context, are not asked
        again when the whole message, as classified (a trusted forward
        unwrapped), has the same header fields (``reusable_results``): the
        chain and the score are otherwise those of ``Classifier.classify``.
        """
        ctx = self._context(mailbox)
        noted = head.notes.get(_RULES_NOTE) if head is not None else None
        known: dict[str, RuleResult] = {}
        if noted is not None and noted[0] is self.classifier and noted[1] is ctx:
            known = reusable_results(head.mail, mail, noted[2])
        if not known:
            return self.classifier.classify(mail, ctx=ctx)
        steps = [
            (_Answered(rule.name, known[rule.name]) if rule.name in known else rule, verdict)
            for rule, verdict in self.classifier.chain
        ]
        trace: list[RuleHit] = []
        decided = Classifier._run(steps, mail=mail, ctx=ctx, trace=trace, score=None)
        return decided or self.classifier._score(mail, ctx, trace)

    def _analyse_parsed(
        self, raw: bytes, mail: ParsedMail, mailbox: str, *, head: HeadReading | None = None
    ) -> Analysis:
        mail = trusted_forward(mail, own_addresses=self.config.settings.own_addresses)
        classification = self._classify(mail, mailbox, head)
        documents: tuple[DocumentText, ...] | None = None
        scored = classification.decided_by == "score"
        # Attachment text is a sign only worth reading for when the cheap signs
        # left the message short of a candidature.
        if (
            scored
            and classification.verdict != Verdict.CANDIDATURE
            and _documents(mail.attachments)
        ):
            documents = self.read_documents(mail.attachments)
            texts = tuple("\n".join(d.pages) for d in documents)
            classification = self.classifier.classify(mail, ctx=self._context(mailbox, texts))
        verdict = classification.verdict
        reading = None
        if verdict in (Verdict.CANDIDATURE, Verdict.FOLLOW_UP) or (
            verdict == Verdict.NEEDS_REVIEW and mail.attachments
        ):
            if documents is None:
                documents = self.read_documents(mail.attachments)
            reading = self.read(mail, documents)
            if verdict == Verdict.CANDIDATURE and reading.needs_review and not reading.in_doubt:
                verdict = Verdict.NEEDS_REVIEW
        warnings = tuple(mail.warnings) + (reading.warnings if reading else ())
        return Analysis(
            raw=raw,
            mailbox=mailbox,
            mail=mail,
            classification=classification,
            reading=reading,
            verdict=str(verdict),
            warnings=warnings,
        )

    def after_reading(
        self,
        analysis: Analysis,
        *,
        open_dossiers: OpenDossiers | None,
        filed_in: str | None = None,
    ) -> Analysis:
        """The chain's second stage on an analysed message (a no-op unless it is a candidature).

        ``open_dossiers``: where the reading rules look for the sender's open
        dossiers (None: no database). ``filed_in``: the dossier a retried
        message already opened. Returns ``analysis`` itself when no rule was
        asked; else a copy with the longer trace and, on a hit, the new verdict.
        """
        mail, reading, first = analysis.mail, analysis.reading, analysis.classification
        if analysis.failed or mail is None or reading is None or first is None:
            return analysis
        ctx = replace(
            self._context(analysis.mailbox),
            reading=reading.facts,
            open_dossiers=open_dossiers,
            filed_in=filed_in,
        )
        classification = self.classifier.classify_reading(mail, first, ctx=ctx)
        if classification is first:
            return analysis
        verdict = analysis.verdict
        if classification.verdict is not first.verdict and verdict != Verdict.NEEDS_REVIEW:
            # A candidature whose reading needs review stays to review (its
            # status), whatever dossier it joins.
            verdict = str(classification.verdict)
        return replace(analysis, classification=classification, verdict=verdict)

    def read_documents(self, attachments: Sequence[Attachment]) -> tuple[DocumentText, ...]:
        wanted = _documents(attachments)
        if not wanted:
            return ()
        # A DocumentsRead (a tuple) that also says whether the message's
        # reading budget ran out: kept as it is, ``read`` looks at it.
        return extract_documents(wanted, limits=self.config.settings.limits)

    def read(self, mail: ParsedMail, documents: tuple[DocumentText, ...]) -> Reading:
        rules = self.config.rules
        dossier = read_dossier(documents, rules=rules)
        letter = find_letter(documents, rules=rules, dossier_sha256=dossier.dossier_sha256)
        roles = attachment_roles(
            documents, dossier_sha256=dossier.dossier_sha256, letter_sha256=letter.letter_sha256
        )
        missing = missing_pieces(
            fields=dossier.fields,
            dossier_present=dossier.dossier_sha256 is not None,
            letter_present=letter.letter_sha256 is not None,
            rules=rules,
        )
        over_budget = bool(getattr(documents, "over_budget", False))
        warnings = (
            tuple(getattr(documents, "warnings", ()))
            + tuple(w for d in documents for w in d.warnings)
            + tuple(dossier.warnings)
        )
        # An unreadable document matters when it may hold what is missing; a huge
        # holiday photo next to a readable dossier and letter does not.
        unreadable = any(d.needs_review for d in documents)
        complete_pieces = dossier.dossier_sha256 is not None and letter.letter_sha256 is not None
        # Over budget, some documents were not read at all: a person decides,
        # whatever was found in the others.
        needs_review = over_budget or dossier.needs_review or (unreadable and not complete_pieces)
        dossier_unreadable = any(
            d.needs_review for d in documents if d.sha256 == dossier.dossier_sha256
        )
        in_doubt = (
            bool(dossier.uncertain_required)
            and not over_budget
            and not dossier_unreadable
            and not (unreadable and not complete_pieces)
        )
        return Reading(
            documents=documents,
            dossier=dossier,
            letter=letter,
            roles=dict(roles),
            missing=tuple(missing),
            missing_text=tuple(describe_missing(missing, rules=rules)),
            warnings=warnings,
            needs_review=needs_review,
            over_budget=over_budget,
            in_doubt=in_doubt,
            answers=read_body_answers(mail.text, rules=rules) if mail.text else None,
        )


class _PartFiles:
    """The files of a spooled message's big attachments: ``<message>.part<N>`` beside it."""

    def __init__(self, message_path: Path) -> None:
        self.message_path = message_path
        self.made: list[Path] = []

    def new(self) -> Path:
        path = self.message_path.with_name(f"{self.message_path.name}.part{len(self.made)}")
        self.made.append(path)
        return path

    def remove(self) -> None:
        for path in self.made:
            path.unlink(missing_ok=True)


def _spool_big(attachment: Attachment, parts: _PartFiles) -> Attachment:
    """A big attachment the parser decoded in memory, moved to a file."""
    data = attachment.data
    if not isinstance(data, bytes) or len(data) < bounds.SPOOL_DECODED_BYTES:
        return attachment
    spool = parts.new()
    spool.write_bytes(data)
    spooled = SpooledData(spool, size=len(data), sha256=attachment.sha256)
    return replace(attachment, data=spooled)  # type: ignore[arg-type]


def store_attachment(blobs: BlobStore, attachment: Attachment) -> str:
    """Store an attachment's bytes; a spooled one is copied from its file, never read whole."""
    data = attachment.data
    if isinstance(data, SpooledData):
        return blobs.put_file(data.path)
    return blobs.put(data)


def remove_spooled(path: Path) -> None:
    """Delete a spooled message and the files of its big attachments (``analyse_file``)."""
    for part in path.parent.glob(glob.escape(path.name) + ".part*"):
        part.unlink(missing_ok=True)
    path.unlink(missing_ok=True)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to give back this way
        return None


def release_freed_memory() -> None:
    """Return the heap's free pages to the system (glibc ``malloc_trim``)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def trusted_forward(mail: ParsedMail, *, own_addresses: frozenset[str]) -> ParsedMail:
    """A forward names its original sender as the applicant only when we forwarded it.

    The parser takes the inner "De :" line (or forwarded message) as the
    sender; anyone can write one. Only a forward from one of our mailboxes
    or a staff address is honoured; from anyone else the outer sender stays
    the sender (so nobody is answered at an address they merely typed).
    """
    if not mail.forwarded:
        return mail
    outer = normalise_address(mail.from_address)
    if outer is not None and outer in {a.lower() for a in own_addresses}:
        return mail
    if outer is not None and outer == normalise_address(mail.sender):
        return mail  # one resending their own mail: nothing to decide
    name = ""
    if outer is not None:
        from_values = mail.headers.get("from") or ()
        name = parseaddr(header_text(from_values[0]))[0] if from_values else ""
    note = (
        f"forward not honoured: {outer or 'the outer sender'} is not one of our addresses, "
        f"so the inner sender {mail.sender or '?'} is not taken as the applicant"
    )
    return replace(
        mail,
        sender=outer or "",
        sender_name=name,
        forwarded=False,
        warnings=(*mail.warnings, note),
    )


def _documents(attachments: Sequence[Attachment]) -> list[Attachment]:
    return [
        a
        for a in attachments
        # Empty files are read too, so that they are named in the warnings; files
        # over the size limit (no data, real size) are not.
        if (a.data or a.size == 0) and a.content_type.startswith(_DOCUMENT_TYPES)
    ]
