"""The staff day in a real browser: Playwright driving the system Chromium.

The back-office runs under uvicorn on a free loopback port, over data filed
by the real pipeline. The screenshots of ``docs/staff.md`` are taken here;
they are written to ``docs/img/web-*.png`` when ``MAILBOT_SCREENSHOTS=1``
(after a change to the pages), otherwise to a temporary directory, so that
a test run leaves the work tree clean. Without Chromium the test is skipped
on a developer's machine and fails under CI (``CI`` set), where it must run.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from PIL import Image

from mailbot.web.app import create_app
from storage import repositories as repo
from storage.db import session_scope
from tests.fixtures.config import SHIPPED_CONFIG, TEST_SECRETS
from tests.fixtures.dovecot import free_port
from tests.fixtures.web import HOSTILE_TITLE, LOGIN, PASSWORD, Office, seed_office

SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "img"
VIEWPORT = {"width": 1200, "height": 760}


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "the system Chromium is needed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Office, str]]:
    config_dir = tmp_path_factory.mktemp("browser") / "config"
    shutil.copytree(SHIPPED_CONFIG, config_dir)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in TEST_SECRETS.items():
            patch.setenv(name, value)
        office = seed_office(config_dir)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(office.app), host="127.0.0.1", port=free_port(), log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        try:
            yield office, f"http://127.0.0.1:{server.config.port}"
        finally:
            server.should_exit = True
            thread.join(timeout=20)
            office.app.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    if os.environ.get("MAILBOT_SCREENSHOTS") == "1":
        return SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def save_screenshot(target, directory: Path, name: str) -> None:
    """Save a small PNG (a reduced palette keeps docs/img light)."""
    image = Image.open(io.BytesIO(target.screenshot()))
    directory.mkdir(parents=True, exist_ok=True)
    small = image.convert("RGB").quantize(colors=64)
    small.save(directory / f"web-{name}.png", optimize=True)


@pytest.mark.timeout(300)
def test_staff_day_log_in_find_open_pdf_accept_see_history(served, browser, screenshots):
    office, base = served

    def screenshot(target, name: str) -> None:
        save_screenshot(target, screenshots, name)

    context = browser.new_context(viewport=VIEWPORT, locale="fr-FR")
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    # No page without a session: the browser lands on the login form.
    page.goto(f"{base}/dossiers/{office.potager}")
    assert page.url == f"{base}/login"
    page.fill("#login", "nbataillon")
    page.fill("#password", "pas le bon mot de passe")
    page.click("text=Se connecter")
    assert page.locator(".notice.error").inner_text() == "Identifiant ou mot de passe incorrect."
    page.fill("#login", LOGIN)
    page.fill("#password", PASSWORD)
    screenshot(page, "login")
    page.click("text=Se connecter")
    page.wait_for_url(f"{base}/dossiers")

    # Find the dossier (as from the digest's reference) and open it.
    assert page.locator("table.list tbody tr").count() == 4
    screenshot(page, "dossiers")
    page.fill("input[name=q]", "perroy")
    page.click("text=Afficher")
    page.wait_for_url("**/dossiers?q=perroy*")
    rows = page.locator("table.list tbody tr")
    assert rows.count() == 1
    rows.first.locator(f"text={office.potager}").click()
    page.wait_for_url(f"{base}/dossiers/{office.potager}")
    assert "Potager solidaire du quartier du Perroy" in page.locator(".intitule").inner_text()
    screenshot(page, "dossier")

    # Its PDF: in the page's viewer frame, and in a tab of its own.
    preview = page.locator("iframe.preview")
    preview.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)  # the viewer draws the first page
    frame_urls = [frame.url for frame in page.frames]
    assert any(f"/dossiers/{office.potager}/pieces/" in url for url in frame_urls)
    screenshot(preview, "pdf")
    with page.expect_popup() as popup_info:
        page.click("ul.pieces >> text=dossier_intention.pdf")
    popup = popup_info.value
    popup.wait_for_load_state()
    pdf = context.request.get(popup.url)
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("inline;")
    assert pdf.body().startswith(b"%PDF-")
    popup.close()

    # Accept it with a note.
    page.select_option("#statut", "accepted")
    page.fill("#note", "Jury du 2 décembre : labellisé à l'unanimité")
    with page.expect_navigation():
        page.click("text=Enregistrer la décision")
    assert "statut « Labellisé » enregistré" in page.locator(".notice").inner_text()
    assert page.locator("h1 .status").inner_text() == "Labellisé"

    # The history says who decided what, and why.
    last = page.locator("ol.history li").last
    text = last.inner_text()
    assert f"staff:{LOGIN}" in text
    assert "Statut modifié" in text and "Complet → Labellisé" in text
    assert "labellisé à l'unanimité" in text
    assert "Pièces consultées" in page.locator("main").inner_text()
    last.scroll_into_view_if_needed()
    screenshot(page, "history")
    with session_scope(office.app.engine) as session:
        assert repo.get_dossier(session=session, reference=office.potager).status == "accepted"

    # The review queue and the replies.
    # (Navigated with goto: a click on the header while Chromium's PDF viewer
    # is still loading in the frame was sometimes dropped.)
    assert page.locator("header nav a[href='/review']").count() == 1
    page.goto(f"{base}/review")
    assert page.url == f"{base}/review"
    # Two messages wait: the follow-up sent by a neighbour and the unreadable
    # candidature (the candidature read with doubt is a dossier to check,
    # listed under the uncertain readings below).
    assert page.locator("text=Traiter à nouveau").count() == 2
    screenshot(page, "review")

    # The uncertain reading, with its doubt and evidence in French.
    readings = page.locator("ul.uncertain > li", has_text=office.uncertain)
    text = readings.inner_text()
    assert "Catégorie de label demandée" in text
    assert "plusieurs cases lues comme cochées là où une seule est attendue" in text
    assert "Lu dans ligne « Catégorie de label demandée" in text and "page 1 de dossier.pdf" in text
    assert "Lecture incertaine (40\u202f%)" in text
    assert "several" not in text and "line '" not in text
    readings.scroll_into_view_if_needed()
    screenshot(page, "review-uncertain")
    readings.locator(f"text={office.uncertain}").click()
    page.wait_for_url(f"{base}/dossiers/{office.uncertain}")
    doubtful = page.locator("table.fields tr.uncertain")
    assert doubtful.count() == 1
    assert "À vérifier" in doubtful.inner_text()
    doubtful.scroll_into_view_if_needed()
    screenshot(page, "dossier-uncertain")

    # The follow-up: attached to the dossier it cites, from the queue.
    page.goto(f"{base}/review")
    row = page.locator("table.follow-ups tbody tr", has_text="voisine@perroy-quartier.fr")
    assert row.locator("input[name=reference]").input_value() == office.potager
    row.locator("form.attach input[name=note]").fill("Photos transmises par une voisine")
    with page.expect_navigation():
        row.locator("form.attach button").click()
    notice = page.locator(".notice").inner_text()
    assert notice == f"Message {office.follow_up} rattaché au dossier {office.potager}."
    assert page.locator("table.follow-ups").count() == 0
    assert "Aucune suite en attente." in page.locator("main").inner_text()
    page.goto(f"{base}/dossiers/{office.potager}")
    assert "potager.jpg" in page.locator("ul.pieces").inner_text()
    attached = page.locator("ol.history li", has_text="Message rattaché au dossier")
    assert f"staff:{LOGIN}" in attached.inner_text()
    assert "Photos transmises par une voisine" in attached.inner_text()

    page.goto(f"{base}/replies")
    # This configuration checks senders' authentication: the replies are held, with why.
    held = page.locator("table.list tbody tr", has_text=office.potager)
    assert "Non envoyée" in held.inner_text()
    assert "contrôles DMARC/SPF/DKIM" in held.inner_text()
    screenshot(page, "replies")
    assert dialogs == []
    context.close()


@pytest.mark.timeout(120)
def test_html_in_an_intitule_or_file_name_stays_text_in_the_browser(served, browser):
    office, base = served
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{base}/login")
    page.fill("#login", LOGIN)
    page.fill("#password", PASSWORD)
    page.click("text=Se connecter")
    page.wait_for_url(f"{base}/dossiers")
    assert HOSTILE_TITLE in page.locator("table.list").inner_text()
    page.goto(f"{base}/dossiers/{office.hostile}")
    assert page.locator(".intitule").inner_text() == HOSTILE_TITLE
    assert "<img src=x onerror=alert(1)>.csv" in page.locator("ul.pieces").inner_text()
    assert page.locator(".intitule b, .intitule script, ul.pieces img").count() == 0
    page.wait_for_timeout(300)
    assert dialogs == []
    context.close()


@pytest.mark.timeout(120)
def test_a_form_posted_from_another_site_is_refused(served, browser):
    """A logged-in browser tricked into posting a decision from elsewhere changes nothing."""
    office, base = served
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("#login", LOGIN)
    page.fill("#password", PASSWORD)
    page.click("text=Se connecter")
    page.wait_for_url(f"{base}/dossiers")
    with session_scope(office.app.engine) as session:
        before = repo.get_dossier(session=session, reference=office.hostile).status
    # Same browser, a page that is not ours: no CSRF token (and, with SameSite=Strict, no cookie).
    page.set_content(
        f'<form method="post" action="{base}/dossiers/{office.hostile}/status">'
        '<input name="statut" value="rejected"><button>go</button></form>'
    )
    page.click("button")
    page.wait_for_load_state()
    assert page.url in (f"{base}/login", f"{base}/dossiers/{office.hostile}/status")
    with session_scope(office.app.engine) as session:
        assert repo.get_dossier(session=session, reference=office.hostile).status == before
    context.close()
