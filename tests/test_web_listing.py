"""The dossier list's search: one scan gives the counts, the total and the page, in order."""

from __future__ import annotations

import pytest

from bench.web import build_database
from mailbot.app import App
from mailbot.web.listing import DossierFilter, find_dossiers
from storage.db import session_scope


@pytest.fixture
def app(config_dir, secrets_env):
    application = App(str(config_dir))
    build_database(application, 300)
    yield application
    application.close()


@pytest.mark.parametrize("sort", ["recus", "anciens", "reference"])
@pytest.mark.parametrize("status", [None, "complete"])
def test_search_pages_match_the_plain_filter(app, sort, status):
    with session_scope(app.engine) as session:
        everything = find_dossiers(session, DossierFilter(sort=sort, status=status, page=1))
        every_row = []
        for page in range(1, everything.pages + 1):
            wanted = DossierFilter(sort=sort, status=status, page=page)
            every_row += find_dossiers(session, wanted).rows
        expected = [r["reference"] for r in every_row if "Perroy" in (r["intitule"] or "")]
        first = find_dossiers(session, DossierFilter(search="PERROY", sort=sort, status=status))
        assert first.total == len(expected)
        found = []
        for page in range(1, first.pages + 1):
            wanted = DossierFilter(search="PERROY", sort=sort, status=status, page=page)
            found += [r["reference"] for r in find_dossiers(session, wanted).rows]
        assert found == expected
        if status is None:
            assert first.pages > 1  # the page boundary is crossed
        # The counts per status ignore the status filter (they offer the other statuses).
        unfiltered = find_dossiers(session, DossierFilter(search="perroy"))
        assert first.counts == unfiltered.counts
        assert sum(first.counts.values()) == unfiltered.total
        # A page past the end shows the last page.
        last = find_dossiers(session, DossierFilter(search="perroy", status=status, page=99))
        assert last.page == last.pages == first.pages
