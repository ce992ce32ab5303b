"""The back-office pages: dossiers, one dossier, its files, the review queue, replies.

Each handler reads through ``mailbot.views`` and ``storage.repositories``
and acts through the service functions the CLI uses
(``decisions.decide_status``, ``privacy.set_legal_hold``,
``retry.retry_message``, ``decisions.dismiss_message``), with
``staff:LOGIN`` as the actor. Files sent by applicants are served so that a
browser can never run them: downloads under a sandboxing
Content-Security-Policy, except PDFs, shown inline by the browser's viewer
under ``default-src 'none'``.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from markupsafe import Markup
from sqlmodel import col, select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from mailbot import decisions, views, wording
from mailbot.errors import MailbotError
from mailbot.web import labels
from mailbot.web.app import BackOffice, staff_page
from mailbot.web.dossier_page import read_dossier_page
from mailbot.web.listing import SORTS, DossierFilter, find_dossiers
from mailbot.web.security import CSRF_FIELD, csrf_token
from parsers.reasons import ReviewReason
from storage import repositories as repo
from storage.db import session_scope
from storage.errors import StorageError
from storage.models import (
    Dossier,
    DossierStatus,
    Message,
    MessageStatus,
    Outbox,
    OutboxStatus,
    Piece,
)

# A file sent by an applicant: nothing in it may run, load or be framed by others.
FILE_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"
# A PDF shown inside the dossier page: framed by our own pages only. Neither
# the frame's sandbox attribute nor the CSP ``sandbox`` directive can be
# used: Chromium refuses to draw a PDF in a sandboxed frame (checked with
# Chromium 14x: the frame shows an error page); ``default-src 'none'`` still
# stops anything the document would load or run.
PDF_CSP = "default-src 'none'; object-src 'self'; frame-ancestors 'self'"
REVIEW_LIMIT = 200
# Messages that name a dossier and wait for staff to attach them to it.
FOLLOW_UP_REASONS = frozenset({ReviewReason.NOT_THE_APPLICANT, ReviewReason.UNKNOWN_DOSSIER})
REFERENCE_RE = re.compile(r"\bBSC-\d{4}-\d{4,}\b")
CONSULTATIONS = ("piece.viewed", "message.downloaded")


def _office(request: Request) -> BackOffice:
    return request.app.state.office


def _actor(request: Request) -> str:
    return f"staff:{request.state.login}"


def _notify(request: Request, text: str, *, error: bool = False) -> None:
    request.session["notice"] = {"text": text, "error": error}


def _refused(request: Request, what: str, error: Exception) -> None:
    """Say on the next page that an action was refused, and why, in French."""
    _notify(request, f"{what} : {wording.refusal_text(error)}", error=True)


def _not_found(request: Request, what: str) -> Response:
    return _office(request).render(
        request, "error.html", {"title": "Introuvable", "message": what}, status_code=404
    )


def _text(form: FormData | None, name: str, *, limit: int = 2000) -> str | None:
    value = str((form or {}).get(name) or "").strip()
    return value[:limit] or None


# --------------------------------------------------------------------------
# dossiers


@staff_page
def dossier_list(request: Request, form: FormData | None) -> Response:
    office = _office(request)
    params = request.query_params
    rules = office.app.config.rules
    status = params.get("statut") or None
    thematique = params.get("thematique") or None
    mailbox = params.get("boite") or None
    wanted = DossierFilter(
        status=status if status in {s.value for s in DossierStatus} else None,
        thematique=thematique if thematique in rules.thematiques else None,
        mailbox=mailbox,
        search=(params.get("q") or "").strip()[:200] or None,
        sort=params.get("tri") if params.get("tri") in SORTS else "recus",
        page=int(params["page"]) if params.get("page", "").isdigit() else 1,
    )
    with session_scope(office.app.engine) as session:
        found = find_dossiers(session, wanted)
    query = {
        k: v
        for k, v in (
            ("statut", wanted.status),
            ("thematique", wanted.thematique),
            ("boite", wanted.mailbox),
            ("q", wanted.search),
            ("tri", wanted.sort),
        )
        if v
    }

    def link(**changes: Any) -> str:
        merged = {**query, **changes}
        return "/dossiers?" + urlencode({k: v for k, v in merged.items() if v})

    return office.render(
        request,
        "dossiers.html",
        {
            "found": found,
            "wanted": wanted,
            "link": link,
            "statuses": [s.value for s in DossierStatus],
            "mailboxes": [m.name for m in office.app.config.settings.mailboxes],
            "sorts": {
                "recus": "Reçus récemment",
                "anciens": "Reçus il y a longtemps",
                "modifies": "Modifiés récemment",
                "reference": "Référence",
            },
        },
    )


def _piece_is_pdf(piece: Piece) -> bool:
    named_pdf = (piece.filename or "").lower().endswith(".pdf")
    return piece.content_type == "application/pdf" or named_pdf


def dossier_fields(rules: Any, detail: SimpleNamespace) -> list[SimpleNamespace]:
    """Each field of ``rules`` with its value and its evidence as staff read them."""
    values, evidence = detail.fields, detail.evidence
    return [
        SimpleNamespace(
            key=key,
            label=rule.label,
            shown=labels.field_value(rules, key, values[key])
            if values.get(key) is not None
            else None,
            evidence=SimpleNamespace(**wording.worded_evidence(evidence.get(key))),
        )
        for key, rule in rules.fields.items()
    ]


def _dossier_body(office: BackOffice, detail: SimpleNamespace) -> str:
    """The body of a dossier page, with the CSRF placeholder (see ``mailbot.web.page_cache``)."""
    rules = office.app.config.rules
    # Consultations are audited with the dossier, but would drown its history.
    consulted = [e for e in detail.events if e.action in CONSULTATIONS]
    detail.events = [e for e in detail.events if e.action not in CONSULTATIONS]
    return office.templates.get_template("dossier_body.html").render(
        dossier=detail,
        consulted=consulted,
        fields=dossier_fields(rules, detail),
        pieces=detail.pieces,
        decisions=labels.DECISIONS,
        rules=rules,
        csrf_field=CSRF_FIELD,
        csrf_token=office.pages.token_slot,
    )


def _dossier_response(request: Request, reference: str, body: str) -> Response:
    """The dossier page around ``body``: the same text as the templates would give, cheaper."""
    office = _office(request)
    pages = office.pages
    if "notice" in request.session or pages.shell is None:
        # The body was rendered by the autoescaping templates; the token is URL-safe base64.
        page = Markup(pages.fill(body, csrf_token(request)))  # noqa: S704
        response = office.render(request, "dossier.html", {"reference": reference, "body": page})
        if pages.shell is None:
            pages.shell = office.templates.get_template("dossier.html").render(
                login=pages.login_slot,
                csrf_field=CSRF_FIELD,
                csrf_token=pages.token_slot,
                rules=office.app.config.rules,
                notice=None,
                reference=pages.title_slot,
                body=Markup(pages.body_slot),  # noqa: S704 (a constant of letters and digits)
            )
        return response
    text = pages.page(body, title=reference, login=request.state.login, token=csrf_token(request))
    return HTMLResponse(text)


def _kept_dossier(
    request: Request, reference: str, login: str, *, on_loop: bool = False
) -> Response | None:
    """The page from its kept body when ``login`` is enabled and the body is current, else None."""
    office = _office(request)
    enabled, stamp = office.pages.check(login=login, reference=reference, on_loop=on_loop)
    if enabled != login or stamp is None:
        return None
    body = office.pages.get(reference, stamp)
    if body is None:
        return None
    request.state.login = login
    return _dossier_response(request, reference, body)


@staff_page
def _dossier_page(request: Request, form: FormData | None) -> Response:
    office = _office(request)
    reference = request.path_params["reference"].strip().upper()
    kept = _kept_dossier(request, reference, request.state.login)
    if kept is not None:
        return kept
    detail = read_dossier_page(office.app.engine, reference=reference)
    if detail is None:
        return _not_found(request, f"Aucun dossier {reference}.")
    body = _dossier_body(office, detail)
    office.pages.put(detail.reference, detail.stamp, body)
    return _dossier_response(request, detail.reference, body)


async def dossier_page(request: Request) -> Response:
    """A dossier: its kept body when current (checked on the event loop on SQLite), else read."""
    office = _office(request)
    if office.pages.inline:
        login = office.claimed_login(request)
        if login is not None:
            reference = request.path_params["reference"].strip().upper()
            kept = _kept_dossier(request, reference, login, on_loop=True)
            if kept is not None:
                return kept
    # Anything else (no session, a login to record, a body to render, PostgreSQL)
    # goes the way of every page: session check and page in a worker thread.
    return await _dossier_page(request)


@staff_page
def dossier_status(request: Request, form: FormData | None) -> Response:
    reference = request.path_params["reference"].strip().upper()
    status = _text(form, "statut", limit=32) or ""
    try:
        decision = decisions.decide_status(
            _office(request).app,
            reference=reference,
            status=status,
            actor=_actor(request),
            note=_text(form, "note"),
        )
    except (MailbotError, StorageError) as error:
        _refused(request, "Décision non enregistrée", error)
    else:
        new = labels.label(labels.DOSSIER_STATUS, decision.new)
        _notify(request, f"{decision.reference} : statut « {new} » enregistré.")
    return RedirectResponse(f"/dossiers/{quote(reference)}", status_code=303)


@staff_page
def dossier_field(request: Request, form: FormData | None) -> Response:
    """The "corriger" form: one field, through the same service as ``dossiers set-field``."""
    reference = request.path_params["reference"].strip().upper()
    key = _text(form, "champ", limit=64) or ""
    try:
        done = decisions.set_field(
            _office(request).app,
            reference=reference,
            key=key,
            value=_text(form, "valeur") or "",
            actor=_actor(request),
            note=_text(form, "note"),
        )
    except (MailbotError, StorageError) as error:
        _refused(request, "Correction non enregistrée", error)
    else:
        rule = _office(request).app.config.rules.fields[key]
        if not done.changed:
            _notify(request, f"{done.reference} : « {rule.label} » avait déjà cette valeur.")
        else:
            text = f"{done.reference} : « {rule.label} » corrigé."
            if done.completed:
                text += " Le dossier est désormais complet."
            _notify(request, text)
    return RedirectResponse(f"/dossiers/{quote(reference)}", status_code=303)


@staff_page
def dossier_hold(request: Request, form: FormData | None) -> Response:
    from mailbot.privacy import set_legal_hold

    reference = request.path_params["reference"].strip().upper()
    hold = _text(form, "conservation", limit=8) == "oui"
    try:
        report = set_legal_hold(
            _office(request).app,
            reference,
            hold,
            actor=_actor(request),
            note=_text(form, "note"),
        )
    except (MailbotError, StorageError) as error:
        _refused(request, "Conservation légale non modifiée", error)
    else:
        state = "activée" if report.hold else "levée"
        _notify(request, f"{report.reference} : conservation légale {state}.")
    return RedirectResponse(f"/dossiers/{quote(reference)}", status_code=303)


# --------------------------------------------------------------------------
# files


def _disposition(kind: str, filename: str) -> str:
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[:100] or "fichier"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename[:200], safe='')}"


def file_response(data: bytes, *, filename: str, inline_pdf: bool) -> Response:
    """Bytes from an applicant, made harmless: a sandboxed inline PDF or a download."""
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    if inline_pdf and data.startswith(b"%PDF-"):
        headers["Content-Security-Policy"] = PDF_CSP
        headers["X-Frame-Options"] = "SAMEORIGIN"
        headers["Content-Disposition"] = _disposition("inline", filename)
        return Response(data, media_type="application/pdf", headers=headers)
    headers["Content-Security-Policy"] = FILE_CSP
    headers["Content-Disposition"] = _disposition("attachment", filename)
    return Response(data, media_type="application/octet-stream", headers=headers)


@staff_page
def piece_file(request: Request, form: FormData | None) -> Response:
    office = _office(request)
    reference = request.path_params["reference"].strip().upper()
    piece_id = request.path_params["piece_id"]
    with session_scope(office.app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=reference)
        piece = session.get(Piece, piece_id)
        if dossier is None or piece is None or piece.dossier_id != dossier.id:
            return _not_found(request, "Cette pièce n'existe pas ou plus.")
        filename = piece.filename or f"piece-{piece.id}"
        inline = _piece_is_pdf(piece) and request.query_params.get("telecharger") is None
        repo.record_event(
            session=session,
            actor=_actor(request),
            action="piece.viewed",
            dossier=dossier,
            details={"piece": piece.id, "filename": filename},
        )
        sha = piece.blob_sha256
    try:
        data = office.app.blobs.get(sha)
    except (OSError, StorageError):
        return _not_found(request, "Le fichier de cette pièce n'est plus conservé.")
    return file_response(data, filename=filename, inline_pdf=inline)


@staff_page
def message_raw(request: Request, form: FormData | None) -> Response:
    office = _office(request)
    message_pk = request.path_params["message_id"]
    with session_scope(office.app.engine) as session:
        message = session.get(Message, message_pk)
        if message is None or message.raw_blob is None:
            return _not_found(request, "Le message d'origine n'est pas conservé.")
        repo.record_event(
            session=session,
            actor=_actor(request),
            action="message.downloaded",
            message=message,
            details={},
        )
        sha = message.raw_blob
    try:
        data = office.app.blobs.get(sha)
    except (OSError, StorageError):
        return _not_found(request, "Le message d'origine n'est plus conservé.")
    return file_response(data, filename=f"message-{message_pk}.eml", inline_pdf=False)


# --------------------------------------------------------------------------
# review queue and replies


def _cited_reference(message: dict[str, Any]) -> str:
    """The dossier a waiting follow-up names (its chain trace or stored detail), or ""."""
    texts = [str(message.get("error") or "")]
    texts += [str(h.get("reason") or "") for h in message["rule_trace"] if isinstance(h, dict)]
    for text in texts:
        found = REFERENCE_RE.search(text.upper())
        if found:
            return found.group(0)
    return ""


def _doubts(rules: Any, dossier: Dossier) -> list[dict[str, Any]]:
    """The fields of ``dossier`` read with doubt: label, best reading, evidence in French."""
    out = []
    fields = dossier.fields or {}
    for key, item in (dossier.evidence or {}).items():
        rule = rules.fields.get(key)
        evidence = wording.worded_evidence(item) if isinstance(item, dict) else {}
        if rule is None or not evidence.get("uncertain"):
            continue
        value = fields.get(key)
        out.append(
            {
                "label": rule.label,
                "shown": labels.field_value(rules, key, value) if value is not None else None,
                "doubt": evidence["doubt"] or wording.UNWORDED_DOUBT,
                "evidence": {**evidence, "doubt": ""},  # the doubt is shown first
            }
        )
    return out


@staff_page
def review_page(request: Request, form: FormData | None) -> Response:
    """Messages waiting (follow-ups to attach, others), uncertain readings, with their actions."""
    office = _office(request)
    rules = office.app.config.rules
    with session_scope(office.app.engine) as session:
        waiting = [
            views.message_summary(session, m)
            for status in (MessageStatus.NEEDS_REVIEW, MessageStatus.FAILED)
            for m in repo.list_messages(session=session, status=status)[:REVIEW_LIMIT]
        ]
        # Dossiers waiting for staff, and those the service still manages
        # that hold a field read with doubt (stored evidence says so; the
        # JSON text is searched so that the database does the filtering).
        rows = session.exec(
            select(Dossier)
            .where(
                (col(Dossier.status) == DossierStatus.NEEDS_REVIEW)
                | (
                    col(Dossier.status).in_([DossierStatus.INCOMPLETE, DossierStatus.COMPLETE])
                    & sa.cast(col(Dossier.evidence), sa.Text).like('%"uncertain": true%')
                )
            )
            .order_by(col(Dossier.received_at).desc(), col(Dossier.id).desc())
            .limit(REVIEW_LIMIT)
        ).all()
        uncertain = [
            {**views.dossier_summary(session, d), "doubts": _doubts(rules, d)} for d in rows
        ]
    for message in waiting:
        message["cited"] = _cited_reference(message)
        message["reason_label"] = labels.review_reason(rules, message)
    follow_ups = [m for m in waiting if m["reason"] in FOLLOW_UP_REASONS]
    others = [m for m in waiting if m["reason"] not in FOLLOW_UP_REASONS]
    return office.render(
        request,
        "review.html",
        {"follow_ups": follow_ups, "messages": others, "uncertain": uncertain},
    )


@staff_page
def review_attach(request: Request, form: FormData | None) -> Response:
    """Attach a waiting message to a dossier: ``messages attach``'s service and checks."""
    message_pk = request.path_params["message_id"]
    reference = (_text(form, "reference", limit=32) or "").upper()
    if not reference:
        _notify(request, "Indiquez la référence du dossier (BSC-AAAA-NNNN).", error=True)
        return RedirectResponse("/review", status_code=303)
    try:
        filed = decisions.attach_message(
            _office(request).app,
            message_pk=message_pk,
            reference=reference,
            actor=_actor(request),
            note=_text(form, "note"),
        )
    except (MailbotError, StorageError) as error:
        _refused(request, f"Message {message_pk} non rattaché", error)
        return RedirectResponse("/review", status_code=303)
    text = f"Message {message_pk} rattaché au dossier {filed.dossier_reference or reference}."
    if filed.dossier_completed:
        text += " Le dossier est désormais complet."
    _notify(request, text)
    return RedirectResponse("/review", status_code=303)


@staff_page
def review_retry(request: Request, form: FormData | None) -> Response:
    from mailbot.retry import retry_message

    message_pk = request.path_params["message_id"]
    try:
        filed = retry_message(_office(request).app, message_pk, actor=_actor(request))
    except (MailbotError, StorageError) as error:
        _refused(request, "Nouvel essai impossible", error)
    else:
        status = labels.label(labels.MESSAGE_STATUS, filed.status)
        where = f", dossier {filed.dossier_reference}" if filed.dossier_reference else ""
        _notify(request, f"Message {message_pk} traité à nouveau : {status}{where}.")
    return RedirectResponse("/review", status_code=303)


@staff_page
def review_dismiss(request: Request, form: FormData | None) -> Response:
    message_pk = request.path_params["message_id"]
    try:
        decisions.dismiss_message(
            _office(request).app,
            message_pk=message_pk,
            actor=_actor(request),
            note=_text(form, "note"),
        )
    except (MailbotError, StorageError) as error:
        _refused(request, "Message non écarté", error)
    else:
        _notify(request, f"Message {message_pk} écarté.")
    return RedirectResponse("/review", status_code=303)


@staff_page
def replies_page(request: Request, form: FormData | None) -> Response:
    office = _office(request)
    with session_scope(office.app.engine) as session:
        rows = session.exec(
            select(Outbox)
            .where(
                col(Outbox.status).in_(
                    [OutboxStatus.SUPPRESSED, OutboxStatus.HELD, OutboxStatus.FAILED]
                )
                | (
                    (col(Outbox.status) == OutboxStatus.QUEUED)
                    & col(Outbox.last_error).is_not(None)
                )
            )
            .order_by(col(Outbox.created_at).desc(), col(Outbox.id).desc())
            .limit(REVIEW_LIMIT)
        ).all()
        dossier_ids = {r.dossier_id for r in rows if r.dossier_id is not None}
        references = dict(
            session.exec(
                select(Dossier.id, Dossier.reference).where(col(Dossier.id).in_(dossier_ids))
            ).all()
        )
        replies = [
            {
                "id": r.id,
                "kind": r.kind,
                "to": r.to_addr,
                "subject": r.subject,
                "status": r.status,
                "reason": wording.reply_reason(r, reference=references.get(r.dossier_id)),
                "attempts": r.attempts,
                "created_at": r.created_at,
                "dossier": references.get(r.dossier_id),
            }
            for r in rows
        ]
    return office.render(request, "replies.html", {"replies": replies})


def routes() -> list[Route]:
    return [
        Route("/dossiers", dossier_list, methods=["GET"]),
        Route("/dossiers/{reference}", dossier_page, methods=["GET"]),
        Route("/dossiers/{reference}/status", dossier_status, methods=["POST"]),
        Route("/dossiers/{reference}/hold", dossier_hold, methods=["POST"]),
        Route("/dossiers/{reference}/field", dossier_field, methods=["POST"]),
        Route("/dossiers/{reference}/pieces/{piece_id:int}", piece_file, methods=["GET"]),
        Route("/messages/{message_id:int}/raw", message_raw, methods=["GET"]),
        Route("/review", review_page, methods=["GET"]),
        Route("/review/{message_id:int}/retry", review_retry, methods=["POST"]),
        Route("/review/{message_id:int}/dismiss", review_dismiss, methods=["POST"]),
        Route("/review/{message_id:int}/attach", review_attach, methods=["POST"]),
        Route("/replies", replies_page, methods=["GET"]),
    ]
