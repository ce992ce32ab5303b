"""The ``mailbot`` command line: thin commands over the service functions.

Exit codes (``interfaces.md``): 0 success, 1 handled failure (message on
stderr, no traceback), 2 bad usage or bad configuration.
"""

from __future__ import annotations

import copy
import functools
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click.exceptions import ClickException
from typer.core import TyperGroup

from mailbot.errors import ConfigError, MailbotError
from storage.errors import StorageError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Column
    from typer._click.core import Command
    from typer._click.formatting import HelpFormatter

    from mailbot.app import App

# The service modules (database, parsers, documents) are imported inside the
# commands that use them: `mailbot --help` and the light commands start fast.
# Rich too: help is Click's plain text (rich_markup_mode=None; Typer's Rich
# renderer, typer.rich_utils, cost more than Typer itself), and the consoles
# below are made on first use, so `--help` and `--json` never import it.


class _Commands(TyperGroup):
    """A group whose help lists each command with its whole first sentence, wrapped.

    Click's plain help would cut it to the terminal's width with "...".
    """

    def format_commands(self, ctx: typer.Context, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=_NO_LIMIT)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_NO_LIMIT = 10_000


def _commands(**options: Any) -> typer.Typer:
    return typer.Typer(cls=_Commands, no_args_is_help=True, rich_markup_mode=None, **options)


app = _commands(
    name="mailbot",
    help="Mail intake of the label Béthune Smart City.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = _commands(help="Check the configuration.")
db_app = _commands(help="Database maintenance.")
dossiers_app = _commands(help="The dossiers of the candidatures.")
messages_app = _commands(help="The ledger of every message seen.")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(dossiers_app, name="dossiers")
app.add_typer(messages_app, name="messages")
staff_app = _commands(help="Accounts of the back-office (mailbot web).")
app.add_typer(staff_app, name="staff")


class _LazyConsole:
    """A console of ``mailbot.terminal``, made (and Rich imported) on first use."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def made(self) -> Console:
        """The console itself, for Rich objects that take one (a progress bar)."""
        if self._console is None:
            from mailbot import terminal

            self._console = terminal.console(stderr=self._stderr)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.made(), name)

    # A property, as on Console: setting it (a test widening the tables) sets the console's.
    @property
    def width(self) -> int:
        return self.made().width

    @width.setter
    def width(self, value: int) -> None:
        self.made().width = value

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name == "width":
            object.__setattr__(self, name, value)
        else:
            setattr(self.made(), name, value)


# Applicant text reaches these consoles: never markup, never control characters.
out = _LazyConsole(stderr=False)
err = _LazyConsole(stderr=True)


def _app(ctx: typer.Context) -> App:
    return ctx.find_root().obj


def _reading_app(ctx: typer.Context) -> App:
    """The app of a command that only reads: templates and rules are checked if and when used.

    ``config check`` and the commands that send or classify mail (``run``,
    ``poll``, ``try``...) still validate every template and rule when they
    load the config.
    """
    application = _app(ctx)
    application.check_templates = False
    application.check_rules = False
    return application


def _worker_app(ctx: typer.Context) -> App:
    """The app of a command that reads mail (``poll``, ``run``): a process that may live
    for months migrates its database in a child process (see ``storage.db``)."""
    application = _app(ctx)
    application.upgrade_apart = True
    return application


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def _set_up_logging(level: int | str, fmt: str) -> None:
    """Log to stderr; every record goes through ``mailbot.logredact`` (no addresses)."""
    import logging

    from mailbot import logredact

    logging.basicConfig(level=level, format=fmt)
    logredact.install()


def _staff_actor() -> str:
    """Who runs a staff command, for the audit trail."""
    name = os.environ.get("MAILBOT_STAFF_USER") or os.environ.get("SUDO_USER")
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "unknown"
    return f"staff:{name}"


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config directory (default: $MAILBOT_CONFIG, then ./config).",
            file_okay=False,
        ),
    ] = None,
) -> None:
    from mailbot.app import App

    ctx.obj = App(str(config) if config else None)
    ctx.call_on_close(ctx.obj.close)


# --------------------------------------------------------------------------
# config


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    no_secrets: Annotated[
        bool,
        typer.Option(
            "--no-secrets",
            help="Do not require the password_env variables (for a machine without the secrets).",
        ),
    ] = False,
) -> None:
    """Validate mailbot.toml, rules.toml and the templates; name each error's file, line and key."""
    from mailbot import digest, replies
    from mailbot.config import check_reply_authentication, check_secrets, load_config

    config = load_config(_app(ctx).config_dir)
    replies.check_templates(config)
    digest.check_templates(config)
    check_reply_authentication(config)
    if not no_secrets:
        check_secrets(config)
    settings = config.settings
    out.print(f"configuration OK: {config.directory}")
    out.print(
        f"  {len(settings.mailboxes)} mailboxes "
        f"({', '.join(m.name for m in settings.mailboxes)}), "
        f"{len(config.rules.fields)} dossier fields, "
        f"{len(config.rules.detection.signs)} detection signs, "
        f"{len(config.template_names)} templates"
    )
    for var in config.env_overrides:
        out.print(f"  overridden by environment: {var}")
    if no_secrets:
        out.print("  secrets not checked (--no-secrets)")


@app.command("health")
def health(
    ctx: typer.Context,
    max_age: Annotated[
        int | None,
        typer.Option(
            help="Heartbeat older than this many seconds is unhealthy (default: 3 polls)."
        ),
    ] = None,
) -> None:
    """Health check for the container: config loads, database answers, worker heartbeat is fresh."""
    import time

    from sqlalchemy import text

    from storage.db import session_scope

    application = _app(ctx)
    settings = application.config.settings
    with session_scope(application.engine) as session:
        session.exec(text("SELECT 1"))
    heartbeat = application.config.resolve_path(settings.service.heartbeat_file)
    limit = max_age or 3 * settings.schedule.poll_interval_seconds
    if heartbeat.exists():
        age = time.time() - heartbeat.stat().st_mtime
        if age > limit:
            raise MailbotError(f"heartbeat {heartbeat} is {age:.0f} s old (limit {limit} s)")
        out.print(f"healthy: heartbeat {age:.0f} s old")
    else:
        out.print("healthy: configuration and database OK (no worker heartbeat yet)")


# --------------------------------------------------------------------------
# db


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the database migrations (the default SQLite database is created if needed)."""
    from storage.db import upgrade

    application = _app(ctx)
    from storage.db import current_revision, make_engine

    engine = make_engine(application.config.database_url)
    try:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        out.print(f"database already at revision {after}")
    else:
        out.print(f"database upgraded from {before or 'empty'} to {after}")


# --------------------------------------------------------------------------
# dossiers


def _dossier_status(value: str | None) -> str | None:
    from storage.models import DossierStatus

    if value is None:
        return None
    allowed = [s.value for s in DossierStatus]
    if value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")
    return value


@dossiers_app.command("list")
def dossiers_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="Only dossiers with this status.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON array on stdout.")] = False,
) -> None:
    """The dossiers, newest first."""
    from mailbot import views
    from storage.db import session_scope

    status = _dossier_status(status)
    application = _reading_app(ctx)
    with session_scope(application.engine) as session:
        data = views.dossier_list(session, status=status)
    if as_json:
        _print_json(data)
        return
    if not data:
        out.print("no dossiers" + (f" with status {status}" if status else ""))
        return
    from rich.table import Table

    from mailbot import wording

    zone = wording.service_zone(application.config)
    table = Table(
        _reference_column("Référence"), "Statut", "Intitulé", "Porteur", _date_column(), "Manque"
    )
    for d in data:
        table.add_row(
            d["reference"],
            d["status_label"],
            d["intitule"] or "—",
            d["porteur_structure"] or "—",
            wording.local_date_time(d["received_at"], zone),
            ", ".join(d["missing"]) or "—",
        )
    out.print(table)


# A reference or a time is never cut or wrapped, whatever the terminal's width.
_REFERENCE_WIDTH = len("BSC-2026-0001")
_DATE_WIDTH = len("24/11/2026 10:12")


def _reference_column(header: str) -> Column:
    from rich.table import Column

    return Column(header, no_wrap=True, min_width=_REFERENCE_WIDTH)


def _date_column(header: str = "Reçu le") -> Column:
    from rich.table import Column

    return Column(header, no_wrap=True, min_width=_DATE_WIDTH)


@dossiers_app.command("show")
def dossiers_show(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(help="Reference such as BSC-2026-0007.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One dossier with its fields, pieces, messages and replies."""
    from mailbot import views
    from storage import repositories as repo
    from storage.db import session_scope

    application = _reading_app(ctx)
    with session_scope(application.engine) as session:
        dossier = repo.get_dossier(session=session, reference=reference.strip().upper())
        if dossier is None:
            raise MailbotError(f"no dossier {reference!r}")
        detail = views.dossier_detail(session, dossier)
    if as_json:
        _print_json(detail)
        return
    from rich.table import Table

    from mailbot import export as exports
    from mailbot import terminal, wording
    from parsers.checks import describe_missing

    out.print(terminal.strong(detail["reference"]), detail["status_label"])
    zone = wording.service_zone(application.config)
    out.print(
        f"reçu le {wording.local_date_time(detail['received_at'], zone)}  de {detail['sender']}",
        markup=False,
    )
    out.print(f"boîtes : {', '.join(detail['mailboxes']) or '—'}")
    if detail["legal_hold"]:
        out.print(terminal.strong("conservation légale : oui"))
    rules = application.config.rules
    missing = describe_missing(detail["missing"], rules=rules)
    out.print(f"manque : {' ; '.join(missing) or 'rien'}", markup=False)
    fields = Table("Champ", "Valeur", title="Champs")
    worded = wording.worded_fields(detail["fields"], rules)
    for key, rule in rules.fields.items():
        value = worded.get(key)
        if value is not None:
            fields.add_row(rule.label, str(exports.cell_text(value)))
    out.print(fields)
    for title, rows, cols in (
        ("Pièces", detail["pieces"], _PIECE_COLUMNS),
        ("Messages", detail["messages"], _MESSAGE_COLUMNS),
        ("Réponses", detail["replies"], _REPLY_COLUMNS),
        ("Historique", detail["events"], _EVENT_COLUMNS),
    ):
        if rows:
            table = Table(*(header for _key, header in cols), title=title)
            for row in rows:
                table.add_row(*(_shown(row, key, zone) for key, _header in cols))
            out.print(table)


# Keys of the views that hold a time: shown local, to the minute.
_TIME_KEYS = frozenset({"at", "sent_at", "created_at", "added_at", "first_seen_at", "date"})


def _shown(row: dict[str, Any], key: str, zone: Any) -> str:
    from mailbot import wording

    value = row.get(key)
    if key in _TIME_KEYS:
        return wording.local_date_time(value, zone)
    # Keys of the views that hold a code, and the table that words it.
    worded_keys = {"role": wording.PIECE_ROLE_LABELS, "action": wording.ACTION_LABELS}
    if key in worded_keys:
        return wording.label(worded_keys[key], value)
    return str(value) if value not in (None, "") else ""


# (key of the view, column header) of the tables of `dossiers show`.
_PIECE_COLUMNS = (("filename", "Fichier"), ("role", "Rôle"), ("size", "Taille"))
_MESSAGE_COLUMNS = (
    ("id", "Id"),
    ("sender", "Expéditeur"),
    ("subject", "Objet"),
    ("verdict_label", "Verdict"),
    ("status_label", "Statut"),
    ("reason_label", "Motif"),
)
_REPLY_COLUMNS = (
    ("kind_label", "Réponse"),
    ("to", "À"),
    ("status_label", "Statut"),
    ("sent_at", "Envoyée le"),
    ("reason_label", "Motif"),
)
_EVENT_COLUMNS = (("at", "Le"), ("actor", "Par"), ("action", "Action"))


@dossiers_app.command("set-status")
def dossiers_set_status(
    ctx: typer.Context,
    *,
    reference: Annotated[str, typer.Argument(help="Reference such as BSC-2026-0007.")],
    status: Annotated[str, typer.Argument(help="complete, accepted, rejected or withdrawn.")],
    note: Annotated[
        str | None, typer.Option("--note", help="Why (kept in the audit trail).")
    ] = None,
) -> None:
    """Record a staff decision on a dossier."""
    from mailbot import decisions

    # Staff decisions this command accepts (the others are set by the service).
    staff_statuses = tuple(status.value for status in decisions.STAFF_STATUSES)
    if status not in staff_statuses:
        raise typer.BadParameter(f"{status!r} is not one of {', '.join(staff_statuses)}")
    actor = _staff_actor()
    decision = decisions.decide_status(
        _app(ctx), reference=reference, status=status, actor=actor, note=note
    )
    if not decision.changed:
        out.print(f"{decision.reference}: already {decision.new}; nothing recorded")
        return
    out.print(f"{decision.reference}: {decision.old} -> {decision.new} ({actor})")


@dossiers_app.command("set-field")
def dossiers_set_field(
    ctx: typer.Context,
    *,
    reference: Annotated[str, typer.Argument(help="Reference such as BSC-2026-0007.")],
    key: Annotated[str, typer.Argument(help="Field key of rules.toml, such as thematique.")],
    value: Annotated[str, typer.Argument(help="New value, as the applicant would write it.")],
    note: Annotated[
        str | None, typer.Option("--note", help="Why (kept in the audit trail).")
    ] = None,
) -> None:
    """Correct one field: validated and normalised as the parser does, audited."""
    from mailbot import decisions

    actor = _staff_actor()
    done = decisions.set_field(
        _app(ctx), reference=reference, key=key, value=value, actor=actor, note=note
    )
    if not done.changed:
        out.print(f"{done.reference}: {key} already {_json_text(done.new)}; nothing recorded")
        return
    out.print(
        f"{done.reference}: {key} {_json_text(done.old)} -> {_json_text(done.new)} ({actor})",
        markup=False,
        soft_wrap=True,
    )
    out.print(f"status: {done.status}; missing: {', '.join(done.missing) or 'nothing'}")
    if done.completed:
        out.print("dossier complete: " + ("reply queued" if done.reply_queued else "reply held"))


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@dossiers_app.command("export")
def dossiers_export(
    ctx: typer.Context,
    *,
    fmt: Annotated[str, typer.Option("--format", help="csv or xlsx.")] = "csv",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File to write (default: stdout for csv).")
    ] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
) -> None:
    """Spreadsheet of the dossiers, one column per field."""
    from mailbot import export as exports
    from mailbot import views, wording
    from storage import repositories as repo
    from storage.db import session_scope

    if fmt not in ("csv", "xlsx"):
        raise typer.BadParameter(f"--format must be csv or xlsx, not {fmt!r}")
    if fmt == "xlsx" and output is None:
        raise typer.BadParameter("xlsx needs -o FILE")
    status = _dossier_status(status)
    application = _reading_app(ctx)
    with session_scope(application.engine) as session:
        details = [
            views.dossier_detail(session, d)
            for d in repo.list_dossiers(session=session, status=status)
        ]
    rules = application.config.rules
    zone = wording.service_zone(application.config)
    writer = exports.to_csv if fmt == "csv" else exports.to_xlsx
    data = writer(rules, details, zone=zone)
    if output is None:
        sys.stdout.buffer.write(data)
        return
    exports.write(output, data)
    err.print(f"{len(details)} dossiers written to {output}")


# --------------------------------------------------------------------------
# messages


@messages_app.command("list")
def messages_list(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option("--status", help="filed, ignored, skipped, needs_review or failed."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every message seen, with its verdict, rule trace, status and error."""
    from rich.table import Table

    from mailbot import views, wording
    from storage import repositories as repo
    from storage.db import session_scope
    from storage.models import MessageStatus

    if status is not None and status not in [s.value for s in MessageStatus]:
        allowed = ", ".join(s.value for s in MessageStatus)
        raise typer.BadParameter(f"{status!r} is not one of {allowed}")
    application = _reading_app(ctx)
    with session_scope(application.engine) as session:
        data = [
            views.message_summary(session, m)
            for m in repo.list_messages(session=session, status=status)
        ]
    if as_json:
        _print_json(data)
        return
    if not data:
        out.print("no messages" + (f" with status {status}" if status else ""))
        return
    zone = wording.service_zone(application.config)
    table = Table(
        "Id",
        _date_column(),
        "Expéditeur",
        "Objet",
        "Verdict",
        "Statut",
        _reference_column("Dossier"),
        "Motif",
    )
    for m in data:
        table.add_row(
            str(m["id"]),
            wording.local_date_time(m["first_seen_at"], zone),
            m["sender"] or "—",
            (m["subject"] or "")[:60],
            m["verdict_label"],
            m["status_label"],
            m["dossier"] or "—",
            (m["reason_label"] or "")[:80],
        )
    out.print(table)


@messages_app.command("retry")
def messages_retry(
    ctx: typer.Context,
    message_id: Annotated[int, typer.Argument(help="Ledger id (see `messages list`).")],
) -> None:
    """Run a failed or needs_review message through the pipeline again."""
    from mailbot.retry import retry_message

    application = _app(ctx)
    filed = retry_message(application, message_id, actor=_staff_actor())
    where = f", dossier {filed.dossier_reference}" if filed.dossier_reference else ""
    out.print(f"message {message_id}: {filed.status} ({filed.verdict or 'no verdict'}){where}")


@messages_app.command("attach")
def messages_attach(
    ctx: typer.Context,
    *,
    message_id: Annotated[int, typer.Argument(help="Ledger id (see `messages list`).")],
    reference: Annotated[str, typer.Argument(help="The dossier, e.g. BSC-2026-0001.")],
    note: Annotated[str | None, typer.Option("--note", help="Why, for the audit trail.")] = None,
) -> None:
    """Attach a message waiting for review to a dossier, after checking who sent it."""
    from mailbot import decisions

    application = _app(ctx)
    filed = decisions.attach_message(
        application,
        message_pk=message_id,
        reference=reference.strip().upper(),
        actor=_staff_actor(),
        note=note,
    )
    done = " (dossier complet)" if filed.dossier_completed else ""
    out.print(f"message {message_id}: rattaché au dossier {filed.dossier_reference}{done}")


# --------------------------------------------------------------------------
# poll


@app.command("poll")
def poll(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="One pass, then exit (the scheduler is `mailbot run`).")
    ] = True,
    no_send: Annotated[
        bool, typer.Option("--no-send", help="Do not deliver queued replies after the pass.")
    ] = False,
) -> None:
    """One pass over every mailbox; prints a one-line summary per mailbox."""
    from mailbot.config import check_secrets
    from mailbot.intake import poll_all

    del once  # a single pass is all this command does
    application = _worker_app(ctx)
    check_secrets(application.config)
    from rich.progress import Progress

    # A first poll over a backlog can take a while: show where it is.
    with Progress(console=err.made(), transient=True, disable=not err.is_terminal) as bar:
        tasks: dict[str, Any] = {}

        def progress(mailbox: str, done: int, total: int) -> None:
            if total < 20:
                return
            if mailbox not in tasks:
                tasks[mailbox] = bar.add_task(f"{mailbox}", total=total)
            bar.update(tasks[mailbox], completed=done)

        reports = poll_all(application, progress=progress)
    for report in reports:
        out.print(report.summary(), markup=False, soft_wrap=True)
    failed = any(r.error for r in reports)
    if not no_send:
        from mailbot.smtp import send_outbox

        sent = send_outbox(application)
        out.print(sent.summary(), markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command("run")
def run_command(ctx: typer.Context) -> None:
    """The service: polls on schedule (IDLE where possible), sends replies and the digest."""
    import logging

    from mailbot.config import check_secrets
    from mailbot.worker import run_service

    application = _worker_app(ctx)
    config = application.config
    check_secrets(config)
    _set_up_logging(
        config.settings.service.log_level, "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Scheduler and migration chatter is not what an operator reads.
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run_service(application)


@app.command("demo")
def demo_command(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the demo's database and config afterwards.")
    ] = False,
    web: Annotated[
        bool,
        typer.Option(
            "--web", help="Then serve the back-office on 127.0.0.1 over the demo data until Ctrl-C."
        ),
    ] = False,
    port: Annotated[
        int | None, typer.Option("--port", help="Port of the back-office (default: 8080).")
    ] = None,
) -> None:
    """The whole service on embedded mail servers with sample mail; no set-up needed."""
    import logging

    from mailbot.demo import run_demo

    _set_up_logging(logging.WARNING, "%(levelname)s %(name)s: %(message)s")
    run_demo(keep=keep, console=out.made(), web=web, port=port)


@app.command("send")
def send(ctx: typer.Context) -> None:
    """Deliver queued replies now."""
    from mailbot.smtp import send_outbox

    application = _app(ctx)
    report = send_outbox(application)
    out.print(report.summary(), markup=False, soft_wrap=True)
    for error in report.errors:
        err.print(f"  {error}", markup=False, soft_wrap=True)


@app.command("try")
def try_command(
    ctx: typer.Context,
    *,
    file: Annotated[Path, typer.Argument(help="A saved message (.eml).", dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    mailbox: Annotated[
        str | None, typer.Option(help="Mailbox it arrived in (default: the first).")
    ] = None,
) -> None:
    """Dry run of the whole pipeline on one message; writes nothing anywhere."""
    from mailbot import export as exports
    from mailbot import terminal
    from mailbot.trial import try_message

    application = _app(ctx)
    try:
        raw = file.read_bytes()
    except OSError as error:
        raise MailbotError(f"cannot read {file}: {error.strerror}") from error
    config = application.config
    if mailbox is not None and mailbox not in [m.name for m in config.settings.mailboxes]:
        raise typer.BadParameter(f"no mailbox named {mailbox!r}")
    result = try_message(config, raw, mailbox=mailbox)
    if as_json:
        _print_json(result)
        return
    out.print("verdict:", terminal.strong(result["verdict"]), f" (score {result['score']})")
    out.print(f"from: {result['sender']}  message-id: {result['message_id']}")
    for step in result["rule_trace"]:
        # Every rule that hit, and the chain's rules that missed (signs that
        # missed are only in --json: there are dozens).
        if step["hit"] or not str(step["rule"]).startswith("sign:"):
            verdict = "hit " if step["hit"] else "miss"
            out.print(f"  {verdict} {step['rule']}: {step['reason']}", markup=False)
    for key, value in result["fields"].items():
        out.print(f"  {key} = {exports.cell_text(value)}", markup=False)
    for item in result["attachments"]:
        out.print(f"  [{item['role']}] {item['filename']} ({item['size']} bytes)", markup=False)
    out.print(f"missing: {', '.join(result['missing']) or 'nothing'}")
    for warning in result["warnings"]:
        out.print(f"  warning: {warning}", markup=False)
    if result["reply"]:
        out.print(f"reply ({result['reply']['kind']}): {result['reply']['subject']}", markup=False)
        out.print(result["reply"]["text"], markup=False)
    else:
        out.print("no reply would be sent")


@app.command("template")
def template_command(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="pdf or docx.")] = "pdf",
) -> None:
    """The blank dossier d'intention, generated from rules.toml."""
    from mailbot import export as exports
    from mailbot.forms import blank_form_docx, blank_form_pdf

    if fmt not in ("pdf", "docx"):
        raise typer.BadParameter(f"--format must be pdf or docx, not {fmt!r}")
    rules = _app(ctx).config.rules
    data = blank_form_pdf(rules) if fmt == "pdf" else blank_form_docx(rules)
    exports.write(output, data)
    err.print(f"blank dossier d'intention written to {output} ({len(data)} bytes)")


@app.command("digest")
def digest_command(
    ctx: typer.Context,
    print_only: Annotated[
        bool, typer.Option("--print", help="Show today's digest without sending anything.")
    ] = False,
) -> None:
    """Send today's staff digest now (once per day), or print it."""
    from mailbot.digest import print_digest, send_digest

    application = _app(ctx)
    if print_only:
        sys.stdout.write(print_digest(application))
        return
    row = send_digest(application)
    if row is None:
        out.print(
            "digest: already sent today, nothing to report (skip_when_empty), or no recipient"
        )
    else:
        count = len(application.config.settings.digest.recipients)
        out.print(f"digest queued and delivered to {count} recipients")


@app.command("purge")
def purge_command(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be deleted.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Delete what the retention rules say has expired (legal holds are kept), with an audit log."""
    from mailbot.privacy import purge

    _set_up_logging("WARNING", "%(levelname)s %(name)s: %(message)s")
    report = purge(_app(ctx), dry_run=dry_run, actor=_staff_actor())
    if as_json:
        _print_json(report.as_dict())
    else:
        out.print(report.summary(), markup=False, soft_wrap=True)
    if report.errors:
        raise typer.Exit(1)


_FORM_ADDRESSES_HELP = (
    "Also act on dossiers where the address was only typed in the form (contact e-mail), "
    "once you checked the request comes from this person."
)


@app.command("export-person")
def export_person_command(
    ctx: typer.Context,
    *,
    email: Annotated[str, typer.Argument(help="The person's e-mail address.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Empty or new directory.")],
    include_form_addresses: Annotated[
        bool, typer.Option("--include-form-addresses", help=_FORM_ADDRESSES_HELP)
    ] = False,
) -> None:
    """Everything about one person (access request): data, original messages and files."""
    from mailbot.privacy import export_person

    _set_up_logging("WARNING", "%(levelname)s %(name)s: %(message)s")
    report = export_person(_app(ctx), email, output, include_form_addresses=include_form_addresses)
    out.print(report.summary(), markup=False, soft_wrap=True)


@app.command("erase-person")
def erase_person_command(
    ctx: typer.Context,
    *,
    email: Annotated[str, typer.Argument(help="The person's e-mail address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    include_form_addresses: Annotated[
        bool, typer.Option("--include-form-addresses", help=_FORM_ADDRESSES_HELP)
    ] = False,
    server_copies: Annotated[
        bool | None,
        typer.Option(
            "--server-copies/--no-server-copies",
            help="Delete or redact the server copies (default: retention.erase_server_copies).",
        ),
    ] = None,
) -> None:
    """Erase one person's data (erasure request), leaving a tombstone; legal holds are refused.

    What will be erased (dossiers, messages, server copies in the mail and
    Sent folders, other people's mail naming the person, to redact) is
    shown first.
    """
    from mailbot.privacy import erase_person, preview_erasure

    _set_up_logging("WARNING", "%(levelname)s %(name)s: %(message)s")
    application = _app(ctx)
    options = {"include_form_addresses": include_form_addresses, "server_copies": server_copies}
    preview = preview_erasure(application, email, **options)
    out.print(preview.summary(), markup=False, soft_wrap=True)
    if not yes:
        if not sys.stdin.isatty():
            err.print("not confirmed: run again with --yes")
            raise typer.Exit(1)
        typer.confirm("Erase all of the above? This cannot be undone", abort=True)
    report = erase_person(application, email, actor=_staff_actor(), **options)
    out.print(report.summary(), markup=False, soft_wrap=True)
    if not report.complete:
        raise typer.Exit(1)


@dossiers_app.command("hold")
def dossiers_hold(
    ctx: typer.Context,
    *,
    reference: Annotated[str, typer.Argument(help="Reference such as BSC-2026-0007.")],
    release: Annotated[bool, typer.Option("--release", help="Lift the legal hold.")] = False,
    note: Annotated[
        str | None, typer.Option("--note", help="Why (kept in the audit trail).")
    ] = None,
) -> None:
    """Put a dossier on legal hold (no purge, no erasure), or lift it with --release."""
    from mailbot.privacy import set_legal_hold

    report = set_legal_hold(
        _app(ctx), reference.strip().upper(), not release, actor=_staff_actor(), note=note
    )
    state = "on legal hold" if report.hold else "no longer on legal hold"
    unchanged = "" if report.changed else " (unchanged)"
    out.print(f"{report.reference}: {state}{unchanged}")


# --------------------------------------------------------------------------
# staff accounts and the back-office


def _read_new_password() -> str:
    """One line of standard input when it is not a terminal, else asked twice without echo."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Mot de passe : ")
    if getpass.getpass("Mot de passe (encore) : ") != first:
        raise MailbotError("the two passwords differ")
    return first


@staff_app.command("add")
def staff_add(
    ctx: typer.Context,
    login: Annotated[str, typer.Argument(help="Login (lower-case letters, digits, . _ -).")],
    name: Annotated[str | None, typer.Option("--name", help="Name shown in the pages.")] = None,
) -> None:
    """Add a back-office account; the password is read from standard input when piped."""
    from mailbot.staff import add_staff, check_password

    password = _read_new_password()
    check_password(password)
    stored = add_staff(
        _app(ctx), login=login, display_name=name, password=password, actor=_staff_actor()
    )
    out.print(f"staff account {stored} added", markup=False)


@staff_app.command("list")
def staff_list(ctx: typer.Context) -> None:
    """The back-office accounts."""
    from rich.table import Table

    from mailbot import wording
    from mailbot.staff import list_staff

    application = _reading_app(ctx)
    accounts = list_staff(application)
    if not accounts:
        out.print("no staff accounts")
        return
    table = Table("Identifiant", "Nom", "Créé le", "État")
    for account in accounts:
        table.add_row(
            account.login,
            account.display_name or "—",
            wording.local_date_time(account.created_at, wording.service_zone(application.config)),
            "désactivé" if account.disabled else "actif",
        )
    out.print(table)


@staff_app.command("remove")
def staff_remove(
    ctx: typer.Context,
    login: Annotated[str, typer.Argument(help="The account's login.")],
) -> None:
    """Disable a back-office account (its login stays reserved for the audit trail)."""
    from mailbot.staff import remove_staff

    stored = remove_staff(_app(ctx), login=login, actor=_staff_actor())
    out.print(f"staff account {stored} removed", markup=False)


@app.command("web")
def web_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
) -> None:
    """The staff back-office in a browser (see docs/staff.md)."""
    import logging

    from mailbot.web.server import serve

    application = _app(ctx)
    logging.basicConfig(
        level=application.config.settings.service.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    serve(application, host=host, port=port)


# --------------------------------------------------------------------------
# entry point


class _CommandsOnDemand(MutableMapping[str, "Command"]):
    """The commands of a group, each converted by Typer when first looked up.

    Typer inspects the signature of every command when it builds the tree
    (about a third of the time of ``import typer``); a command run needs one.
    The help lists them all, in their order of declaration.
    """

    def __init__(self, builders: dict[str, Callable[[], Command]]) -> None:
        self._builders = builders
        self._built: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self._built:
            self._built[name] = self._builders[name]()
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._builders[name] = lambda: command
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._builders[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)


def _command_tree() -> Command:
    """``typer.main.get_command(app)``, with its commands and groups built on demand."""
    from typer.main import get_command_from_info, get_group_from_info

    bare = copy.copy(app)
    bare.registered_commands = []
    bare.registered_groups = []
    root = typer.main.get_command(bare)  # the group, its callback and options
    assert isinstance(root, TyperGroup)
    builders: dict[str, Callable[[], Command]] = {}
    # Typer's own order: the commands, then the groups.
    for command_info in app.registered_commands:
        assert command_info.name, command_info
        builders[command_info.name] = functools.partial(
            get_command_from_info,
            command_info=command_info,
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
        )
    for group_info in app.registered_groups:
        assert group_info.name, group_info
        builders[group_info.name] = functools.partial(
            get_group_from_info,
            group_info,
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
            suggest_commands=app.suggest_commands,
        )
    root.commands = _CommandsOnDemand(builders)
    return root


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map failures to the documented exit codes."""
    command = _command_tree()
    try:
        result = command.main(args=argv, prog_name="mailbot", standalone_mode=False)
    except typer.Exit as exit_:
        return exit_.exit_code
    except ClickException as error:
        # Usage errors (exit 2) are shown as Typer shows them in standalone mode.
        error.show()
        return error.exit_code
    except typer.Abort:
        err.print("aborted")
        return 1
    except ConfigError as error:
        err.print("configuration error:", markup=False)
        for problem in error.problems:
            err.print(f"  {problem}", markup=False, soft_wrap=True)
        return 2
    except (MailbotError, StorageError) as error:
        err.print(f"error: {error}", markup=False, soft_wrap=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
