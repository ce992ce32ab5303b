"""What each privacy request reports back, for the CLI and the logs.

Every report prints as its one-line ``summary()`` and turns into JSON-ready
data with ``as_dict()`` (the base ``Report``). Purge and erasure both delete
through the same plan, so they share ``DeletionReport``: the counts of what
went, what happened to the server copies, and the errors met after commit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any


def isoformat_or_none(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def to_jsonable(value: Any) -> Any:
    """Dates as ISO 8601 and paths as text, inside any nesting of dicts and lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


class Report:
    """A request's outcome: ``str()`` is the summary, ``as_dict()`` the JSON form."""

    def summary(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.summary()

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))  # type: ignore[call-overload]


@dataclass
class ServerCopiesReport:
    """Server copies of deleted mail in one mailbox."""

    mailbox: str
    planned: int
    deleted: int = 0
    # No longer where the ledger saw them: UIDVALIDITY changed, moved or deleted by staff.
    not_found: int = 0
    error: str | None = None


@dataclass(kw_only=True)
class DeletionReport(Report):
    """What a deletion plan removed (purge or erasure); blobs are recounted after commit."""

    # Every message row, those of the dossiers included.
    messages: int = 0
    pieces: int = 0
    replies: int = 0
    events: int = 0
    sightings: int = 0
    blobs: int = 0
    bytes: int = 0
    # Server positions to clean (``delete_server_copies``), and what happened there.
    server_copies: int = 0
    server: list[ServerCopiesReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Mailboxes whose copies could not be deleted, then the other errors."""
        found = [f"mailbox {c.mailbox}: {c.error}" for c in self.server if c.error]
        return found + self.errors

    def as_dict(self) -> dict[str, Any]:
        # The request's own fields first, then the shared counts.
        data = super().as_dict()
        shared = [f.name for f in fields(DeletionReport)]
        own = {name: value for name, value in data.items() if name not in shared}
        return own | {name: data[name] for name in shared}


@dataclass
class PurgedDossier:
    reference: str
    status: str
    updated_at: datetime
    retention_days: int
    messages: int = 0
    pieces: int = 0
    replies: int = 0
    events: int = 0
    blobs: int = 0


@dataclass(kw_only=True)
class PurgeReport(DeletionReport):
    """What a purge deleted, or would delete with ``dry_run``."""

    dry_run: bool
    now: datetime
    dossiers: list[PurgedDossier] = field(default_factory=list)
    # Expired, but on legal hold: kept.
    held: list[str] = field(default_factory=list)
    ledger_messages: int = 0
    quarantine_messages: int = 0
    # Outbox rows: digests past ``digest_days``, replies outside any dossier.
    digests: int = 0
    loose_replies: int = 0

    @property
    def references(self) -> list[str]:
        return [d.reference for d in self.dossiers]

    @property
    def empty(self) -> bool:
        return not (self.dossiers or self.messages or self.blobs or self.replies)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        parts = [
            f"{verb} {len(self.dossiers)} dossiers"
            + (f" ({', '.join(self.references)})" if self.dossiers else ""),
            f"{self.messages} messages ({self.ledger_messages} ledger-only, "
            f"{self.quarantine_messages} quarantined)",
            f"{self.blobs} blobs ({self.bytes} bytes)",
        ]
        if self.digests or self.loose_replies:
            parts.append(f"{self.digests} digests, {self.loose_replies} replies outside dossiers")
        if self.server_copies:
            done = sum(s.deleted for s in self.server)
            parts.append(
                f"{self.server_copies} server copies"
                + ("" if self.dry_run else f" ({done} deleted)")
            )
        if self.held:
            parts.append(f"kept on legal hold: {', '.join(self.held)}")
        return "; ".join(parts + self.problems())


@dataclass(kw_only=True)
class EraseReport(DeletionReport):
    """What an erasure deleted, what it refused, and where the person was removed."""

    # HMAC-SHA256 of the address (keyed tombstone), never the address itself.
    email_hmac: str
    dossiers: list[str] = field(default_factory=list)
    # On legal hold: nothing of theirs was erased.
    refused: list[str] = field(default_factory=list)
    # Naming the address only in their form: left out (no include_form_addresses).
    form_only: list[str] = field(default_factory=list)
    # Other people's dossiers holding mail this person sent: kept, redacted.
    other_dossiers: list[str] = field(default_factory=list)
    # Other people's mail naming the person (Cc, body): "message <id> (<reference>)".
    others: list[str] = field(default_factory=list)
    # Stored raw messages and text pieces rewritten without the person.
    redacted_messages: int = 0
    redacted_pieces: int = 0
    # Remaining rows from which the address, name or phone was removed.
    scrubbed: int = 0

    @property
    def complete(self) -> bool:
        return not self.refused and not self.errors and not any(s.error for s in self.server)

    def summary(self) -> str:
        parts = [
            f"erased {len(self.dossiers)} dossiers"
            + (f" ({', '.join(self.dossiers)})" if self.dossiers else ""),
            f"{self.messages} messages, {self.replies} replies, {self.blobs} blobs",
            f"person removed from {self.scrubbed} other rows and "
            f"{self.redacted_messages} stored messages and {self.redacted_pieces} text pieces",
        ]
        if self.server:
            done = sum(s.deleted for s in self.server)
            missing = sum(s.not_found for s in self.server)
            parts.append(f"{done} server copies deleted or redacted ({missing} not found)")
        if self.refused:
            parts.append(f"REFUSED (legal hold): {', '.join(self.refused)}")
        if self.other_dossiers:
            parts.append(f"her or his mail kept, redacted, in: {', '.join(self.other_dossiers)}")
        return "; ".join(parts + self.problems()) + form_only_note(self.form_only)


@dataclass(kw_only=True)
class ErasurePreview(Report):
    """What ``erase-person`` is about to do, shown before it is confirmed."""

    dossiers: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    form_only: list[str] = field(default_factory=list)
    messages: int = 0
    replies: int = 0
    # Copies of the person's mail in the staff's folders (INBOX, processed folder).
    server_copies: int = 0
    # Our replies to the person in the Sent folder.
    sent_copies: int = 0
    # Digests and replies whose Sent copy may name the person (checked, redacted).
    sent_to_check: int = 0
    # Other people's mail naming the person: redacted, stored and server copies.
    others: list[str] = field(default_factory=list)
    server_enabled: bool = True

    def summary(self) -> str:
        lines = [
            f"dossiers to erase: {', '.join(self.dossiers) or 'none'}",
            f"messages to delete: {self.messages}; replies to delete: {self.replies}",
        ]
        if self.server_enabled:
            lines.append(
                f"server copies to delete: {self.server_copies} in the mail folders, "
                f"{self.sent_copies} in the Sent folder; {self.sent_to_check} sent digests "
                "or replies to check and redact"
            )
        else:
            lines.append("server copies: left on the server (erase_server_copies = false)")
        if self.others:
            lines.append(
                "other people's mail naming this person, to redact (stored and server "
                "copies): " + ", ".join(self.others)
            )
        if self.refused:
            lines.append(f"REFUSED (legal hold): {', '.join(self.refused)}")
        if self.form_only:
            lines.append(form_only_note(self.form_only).removeprefix("; "))
        return "\n".join(lines)


@dataclass
class ExportReport(Report):
    """What an access request wrote, and the files it could not find."""

    email: str
    out_dir: Path
    dossiers: list[str] = field(default_factory=list)
    messages: int = 0
    eml_files: int = 0
    pieces: int = 0
    replies: int = 0
    events: int = 0
    # Paths written, relative to out_dir (POSIX separators).
    files: list[str] = field(default_factory=list)
    # Digests named by the database but absent from the blob store.
    missing_blobs: list[str] = field(default_factory=list)
    # Dossiers naming the address only in their form, left out (no
    # ``include_form_addresses``).
    form_only: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"exported {len(self.dossiers)} dossiers, {self.messages} messages "
            f"({self.eml_files} .eml), {self.pieces} pieces, {self.replies} replies, "
            f"{self.events} audit entries to {self.out_dir}"
            + (f"; {len(self.missing_blobs)} files missing" if self.missing_blobs else "")
            + form_only_note(self.form_only)
        )


def form_only_note(references: list[str]) -> str:
    """The summary's note on dossiers left out because only their form names the address."""
    if not references:
        return ""
    return (
        f"; NOT INCLUDED, address only typed in the form of: {', '.join(references)} "
        "(check the request comes from this person, then use --include-form-addresses)"
    )


@dataclass(frozen=True)
class LegalHoldReport:
    reference: str
    hold: bool
    changed: bool
