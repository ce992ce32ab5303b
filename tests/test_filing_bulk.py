"""The quiet run's bulk filing writes exactly the rows the general path writes.

Mail that is not for us is filed a run at a time (``intake._file_quiet`` ->
``filing.file_ignored`` -> ``filing.bulk_ledger``), its ledger rows and
sightings inserted by one driver executemany each
(``storage.repositories.insert_ledger_rows``, ``insert_sightings``) and the
cursor moved by one UPDATE (``advance_cursor``). Here the same analyses go
through that path and, in a twin database, through the general path, one
message at a time (``intake._file`` -> ``filing.file_analysis``, the ORM),
and every column of every table is compared as the database stores it
(SQLite's own text, PostgreSQL's row text), on SQLite and PostgreSQL.

The analyses: everyday mail (the backlog bench's), the golden mails, the
hostile messages and the mutation seeds that are not for us, header-only
analyses (decided from the headers: ``raw`` is the header block), a message
without Message-ID, messages twice in a run and across runs, and messages
already in the ledger from another mailbox. Both server-action settings are
run (nothing to do: sightings settled at once; a keyword: pending, then
flagged). A concurrent insert of a message of the run makes the bulk insert
fail, and the run is filed one by one as before. The storage functions are
also compared with SQLAlchemy's own ``insert`` on rows that leave columns
out, hold defaults, ``None`` in a JSON column and datetimes in other zones.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from bench.harness import everyday_messages
from mailbot import intake
from mailbot.app import App
from mailbot.config import load_config
from mailbot.filing import Filed, Position, dedup_key, file_ignored, is_quiet
from mailbot.imap import FolderState
from mailbot.pipeline import Analyser, Analysis
from parsers.mail import header_block
from storage import repositories as repo
from storage.db import open_database, session_scope
from storage.models import Message, MessageStatus, Sighting, dedup_key_for
from tests.fixtures.database import POSTGRES_URL_ENV, throwaway_postgres_database
from tests.fixtures.hostile_mail import CASES
from tests.fixtures.mutations import SEEDS

NB, DB = "n.bataillon", "d.berteloot"
GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.eml"))
NOW = dt.datetime(2026, 12, 3, 7, 30, 15, 123456, tzinfo=dt.UTC)
STATE = FolderState("INBOX", 4_294_967_295, None, None)


# -- the inputs -------------------------------------------------------------


def _quiet_analyses(analyser: Analyser) -> list[Analysis]:
    """Every corpus message that is not for us, in a few shapes."""
    corpus = [path.read_bytes() for path in GOLDEN]
    corpus += [build() for build in CASES.values()]
    corpus += list(SEEDS)
    everyday = everyday_messages(60)
    corpus += everyday
    # No Message-ID: its dedup key is the digest of its bytes.
    head, _sep, body = everyday[1].partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"message-id:")]
    corpus.append(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    analyses = [analyser.analyse(raw, mailbox=NB) for raw in corpus]
    quiet = [analysis for analysis in analyses if is_quiet(analysis)]
    # Decided from the headers: the header block stands for the message.
    quiet[-9:-3] = [
        dataclasses.replace(analysis, raw=header_block(analysis.raw), whole_size=len(analysis.raw))
        for analysis in quiet[-9:-3]
    ]
    assert len(quiet) > 60
    return quiet


def _run(analyses: list[Analysis]) -> list[tuple[Analysis, Position]]:
    """The mailbox as fetched: a few messages twice (same run, next run), in UID order."""
    items = list(analyses)
    items.insert(5, analyses[2])  # twice in one run
    items.insert(40, analyses[3])  # again in a later run
    return [
        (analysis, Position(NB, STATE.name, STATE.uidvalidity, uid))
        for uid, analysis in enumerate(items, 10)
    ]


# -- the databases ----------------------------------------------------------


@pytest.fixture
def twin_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database on the back end of ``db_url``."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'twin' / 'mailbot.sqlite3'}"
        return
    with throwaway_postgres_database(os.environ[POSTGRES_URL_ENV]) as url:
        yield url


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both paths read the same time, so that their timestamps can be compared."""
    for module in ("mailbot.filing", "mailbot.intake", "storage.repositories"):
        monkeypatch.setattr(f"{module}.utcnow", lambda: NOW, raising=False)


def _app(config_dir: Path, url: str, **environ: str) -> App:
    config = load_config(
        config_dir,
        environ={**os.environ, "MAILBOT_DATABASE__URL": url, **environ},
    )
    return App(str(config_dir), _config=config)


def _stored(engine: Engine, *, ids: bool = True) -> dict[str, list[Any]]:
    """Every row of every table as the database stores it, in primary key order.

    Sightings are compared by position, without their own id: a run files
    the sightings of messages already in the ledger before its new ones
    (as it always has), the general path in UID order. ``ids=False``: the
    ledger's ids are left out too, a sighting naming its message by dedup
    key (a PostgreSQL sequence does not give back the ids of a rolled-back
    transaction).
    """
    tables: dict[str, list[Any]] = {}
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        for table in SQLModel.metadata.sorted_tables:
            shown = []
            for column in table.columns:
                name = column.name
                if name == "id" and (
                    table.name == "sighting" or (table.name == "message" and not ids)
                ):
                    continue
                if table.name == "sighting" and name == "message_pk" and not ids:
                    name = "(SELECT dedup_key FROM message WHERE message.id = message_pk)"
                # PostgreSQL's text of a column is what it stores (json: the text given).
                shown.append(f"CAST({name} AS text)" if postgres else name)
            order = ", ".join(column.name for column in table.primary_key.columns)
            query = f"SELECT {', '.join(shown)} FROM {table.name} ORDER BY {order}"
            tables[table.name] = [tuple(row) for row in connection.exec_driver_sql(query)]
    tables["sighting"].sort()
    return tables


class _Client:
    """The IMAP calls a quiet run may make: a keyword on mail that is not for us."""

    def __init__(self) -> None:
        self.flagged: list[int] = []

    def add_keyword(self, uids: list[int], keyword: str) -> None:
        self.flagged.extend(uids)


# -- the two paths ------------------------------------------------------------


def _general(app: App, analyser: Analyser, items: list[tuple[Analysis, Position]]) -> Any:
    """One message at a time, as a message that needs more is filed."""
    mailbox = app.config.settings.mailbox(NB)
    client, report, filed = _Client(), intake.MailboxReport(NB), []
    for analysis, position in items:
        outcome = intake._file(
            app, analysis=analysis, position=position, state=STATE, analyser=analyser
        )
        filed.append(outcome)
        report.count(outcome)
        intake._server_action(app, client=client, mailbox=mailbox, position=position, filed=outcome)  # type: ignore[arg-type]
    return filed, report, client.flagged


def _bulk(
    app: App,
    analyser: Analyser,
    items: list[tuple[Analysis, Position]],
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """In runs of a fetch batch, as the first poll files mail that is not for us."""
    mailbox = app.config.settings.mailbox(NB)
    client, report, filed = _Client(), intake.MailboxReport(NB), []

    def recorded(**kwargs: Any) -> list[Filed]:
        outcomes = file_ignored(**kwargs)
        filed.extend(outcomes)
        return outcomes

    with monkeypatch.context() as patch:
        patch.setattr(intake, "file_ignored", recorded)
        batch = 17  # runs that end inside the duplicates, not on a round number
        for start in range(0, len(items), batch):
            intake._file_quiet(
                app,
                client=client,  # type: ignore[arg-type]
                mailbox=mailbox,
                state=STATE,
                analyser=analyser,
                items=items[start : start + batch],
                report=report,
            )
    return filed, report, client.flagged


def _known_elsewhere(app: App, analyser: Analyser, analyses: list[Analysis]) -> None:
    """A few of the messages, already filed from the other mailbox."""
    for uid, analysis in enumerate(analyses[7:40:6], 1):
        intake._file(
            app,
            analysis=analysis,
            position=Position(DB, "INBOX", 9, uid),
            state=FolderState("INBOX", 9, None, None),
            analyser=analyser,
        )


@pytest.mark.parametrize("on_ignored", ["none", "keyword"])
def test_a_quiet_run_writes_what_the_general_path_writes(
    db_url, twin_url, config_dir, secrets_env, clock, monkeypatch, on_ignored
):
    settings = {"MAILBOT_MAILBOXES__0__ON_IGNORED": on_ignored}
    general_app, bulk_app = (
        _app(config_dir, db_url, **settings),
        _app(config_dir, twin_url, **settings),
    )
    try:
        analyser = Analyser(general_app.config)
        analyses = _quiet_analyses(analyser)
        items = _run(analyses)
        _known_elsewhere(general_app, analyser, analyses)
        _known_elsewhere(bulk_app, analyser, analyses)

        general = _general(general_app, analyser, items)
        bulk = _bulk(bulk_app, analyser, items, monkeypatch)

        assert bulk[0] == general[0]  # Filed: ids, statuses, duplicates
        assert bulk[1] == general[1]  # the report's counts
        assert sorted(bulk[2]) == sorted(general[2])  # the keyword set on the server
        stored = _stored(bulk_app.engine)
        assert stored == _stored(general_app.engine)
        # Known from the other mailbox, twice in the run, or twice in the corpus.
        distinct = {dedup_key(analysis)[0] for analysis in analyses}
        assert sum(outcome.duplicate for outcome in bulk[0]) == len(items) - len(distinct) + 6
        assert len(stored["sighting"]) == len(items) + 6
    finally:
        general_app.close()
        bulk_app.close()


def test_a_concurrent_insert_sends_the_run_one_by_one(
    db_url, twin_url, config_dir, secrets_env, clock, monkeypatch
):
    """A message of the run written by another worker after the look-up: the run's
    transaction fails on the unique key and each message is filed alone."""
    general_app, bulk_app = _app(config_dir, db_url), _app(config_dir, twin_url)
    try:
        analyser = Analyser(general_app.config)
        analyses = _quiet_analyses(analyser)[:30]
        items = _run(analyses)
        _known_elsewhere(general_app, analyser, analyses)
        _known_elsewhere(bulk_app, analyser, analyses)
        general = _general(general_app, analyser, items)

        looked_up = repo.ledger_ids
        calls = []

        def unseen_first(**kwargs: Any) -> dict[str, int]:
            calls.append(kwargs)
            return {} if len(calls) == 1 else looked_up(**kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(repo, "ledger_ids", unseen_first)
            bulk = _bulk(bulk_app, analyser, items, monkeypatch)
        assert len(calls) > 1  # the first run's look-up missed a message of the ledger
        assert bulk[1] == general[1]
        assert _stored(bulk_app.engine, ids=False) == _stored(general_app.engine, ids=False)
    finally:
        general_app.close()
        bulk_app.close()


def test_file_ignored_raises_integrity_error_on_a_concurrent_insert(
    engine, config_dir, secrets_env, monkeypatch
):
    analyser = Analyser(load_config(config_dir))
    first, second = (analyser.analyse(raw, mailbox=NB) for raw in everyday_messages(2))
    position = Position(NB, "INBOX", 1, 1)
    with session_scope(engine) as session:
        file_ignored(session=session, items=[(first, position)], settled=True)
    # Its position taken meanwhile: the sighting's unique key.
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        file_ignored(session=session, items=[(second, position)], settled=True)
    # In the ledger, though the look-up did not see it: the message's unique key.
    with monkeypatch.context() as patch:
        patch.setattr(repo, "ledger_ids", lambda **_kwargs: {})
        with pytest.raises(IntegrityError), session_scope(engine) as session:
            file_ignored(
                session=session, items=[(first, Position(NB, "INBOX", 1, 2))], settled=True
            )
    with Session(engine) as session:
        assert len(repo.list_messages(session=session)) == 1


# -- the storage functions against SQLAlchemy's insert ----------------------------


def _rows(n: int) -> list[dict[str, Any]]:
    """Ledger rows of many shapes: columns left out, defaults, odd JSON and zones."""
    paris = dt.timezone(dt.timedelta(hours=1))
    rows = []
    for i in range(n):
        sha = f"{i:064x}"
        row: dict[str, Any] = {
            "dedup_key": dedup_key_for(f"<m{i}@example.org>" if i % 3 else None, sha),
            "sha256": sha,
            "size": 10**10 + i,
            "sender": f"é{i}@example.org",
            "status": MessageStatus.IGNORED,
            "headers": {"subject": ["Réunion ✓", None], "n": i, "nested": {"a": [1.5, True]}},
            "rule_trace": [
                {"rule": "bulk_precedence", "hit": bool(i % 2), "reason": "Precedence: 'bulk'"}
            ],
            "warnings": ["w"] * (i % 2),
            "first_seen_at": NOW.astimezone(paris),
            "updated_at": NOW,
        }
        if i % 2:
            row.update(message_id=f"<m{i}@example.org>", subject="s" * i, attempts=i, reason=None)
        if i % 4 == 1:
            row.update(
                date_header=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=paris), sender_name="Ann"
            )
        if i % 5 == 2:
            row["headers"] = None  # JSON null, not SQL NULL (the column is NOT NULL)
        rows.append(row)
    return rows


def test_insert_ledger_rows_and_sightings_store_what_sqlalchemy_stores(db_url, twin_url):
    orm_engine, bulk_engine = open_database(db_url), open_database(twin_url)
    try:
        rows = _rows(23)
        # SQLAlchemy's insert takes rows of one shape per statement.
        with session_scope(orm_engine) as session:
            ids = []
            for row in rows:
                ids += session.execute(insert(Message).returning(Message.id), [row]).scalars()
            session.execute(insert(Sighting), _sightings(ids))
        with session_scope(bulk_engine) as session:
            bulk_ids = repo.insert_ledger_rows(session=session, rows=rows)
            repo.insert_sightings(session=session, rows=_sightings(bulk_ids))
        assert bulk_ids == ids
        assert _stored(bulk_engine) == _stored(orm_engine)
        with session_scope(bulk_engine) as session:
            assert repo.ledger_ids(session=session, dedup_keys=[rows[3]["dedup_key"], "mid:x"]) == {
                rows[3]["dedup_key"]: ids[3]
            }
    finally:
        orm_engine.dispose()
        bulk_engine.dispose()


def _sightings(ids: list[int]) -> list[dict[str, Any]]:
    sightings = []
    for n, pk in enumerate(ids):
        sighting = {
            "message_pk": pk,
            "mailbox": NB,
            "folder": "INBOX",
            "uidvalidity": 2**32 - 1,
            "uid": n,
            "seen_at": NOW,
        }
        if n % 2:
            sighting["server_action"] = "none"  # else the column's default, pending
        sightings.append(sighting)
    return sightings
