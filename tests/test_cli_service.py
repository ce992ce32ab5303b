"""The digest and personal-data commands through the CLI, on mail filed from a real Dovecot."""

from __future__ import annotations

import json

from mailbot.cli import main
from mailbot.intake import poll_all
from tests.fixtures.candidatures import application


def test_digest_print_purge_hold_export_erase(replies_app, dovecot, smtp_server, tmp_path, capsys):
    dovecot.append("n.bataillon", application(letter=False))
    assert poll_all(replies_app)[0].filed == 1
    capsys.readouterr()

    assert main(["digest", "--print"]) == 0
    printed = capsys.readouterr().out
    assert "BSC-" in printed and "le courrier officiel adressé à Monsieur le Maire" in printed
    assert smtp_server.messages == []

    assert main(["digest"]) == 0
    capsys.readouterr()
    recipients = {r for c in smtp_server.messages for r in c.rcpt_tos}
    assert {"n.bataillon@ville-bethune.fr", "d.berteloot@ville-bethune.fr"} <= recipients
    before = len(smtp_server.messages)
    assert main(["digest"]) == 0
    assert "already sent today" in capsys.readouterr().out
    assert len(smtp_server.messages) == before

    assert main(["dossiers", "list", "--json"]) == 0
    [dossier] = json.loads(capsys.readouterr().out)
    reference = dossier["reference"]
    assert main(["dossiers", "hold", reference, "--note", "contentieux"]) == 0
    capsys.readouterr()
    assert main(["erase-person", "marie.lefebvre@jardins-perroy.fr", "--yes"]) == 1
    assert reference in capsys.readouterr().out

    out_dir = tmp_path / "export"
    assert main(["export-person", "Marie.Lefebvre@jardins-perroy.fr", "-o", str(out_dir)]) == 0
    capsys.readouterr()
    assert (out_dir / "person.json").exists()
    assert list((out_dir / "messages").glob("*.eml"))

    assert main(["purge", "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is True

    assert main(["dossiers", "hold", reference, "--release"]) == 0
    assert main(["erase-person", "marie.lefebvre@jardins-perroy.fr", "--yes"]) == 0
    capsys.readouterr()
    assert main(["dossiers", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
