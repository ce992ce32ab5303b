"""Spreadsheet exports of the dossiers for staff (CSV and XLSX).

One row per dossier, one column per field of ``rules.toml`` (in the form's
order, headed by the printed label), plus reference, status (worded by
``mailbot/wording.py``), dates, sender, mailboxes and what is missing.
CSV is written in UTF-8 with a BOM and ``;`` separators, which is what
French spreadsheet software opens correctly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailbot import wording
from mailbot.config import Rules

BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("reference", "Référence"),
    ("status", "Statut"),
    ("received_at", "Reçu le"),
    ("updated_at", "Mis à jour le"),
    ("completed_at", "Complet le"),
    ("sender", "Expéditeur"),
    ("mailboxes", "Boîtes de réception"),
    ("missing", "Éléments manquants"),
)


def columns(rules: Rules) -> list[tuple[str, str]]:
    return [*BASE_COLUMNS, *((key, rule.label) for key, rule in rules.fields.items())]


def cell_text(value: Any) -> Any:
    """A value as one spreadsheet cell: lists joined with commas, None as empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={v}" for k, v in value.items())
    return value


def rows(rules: Rules, dossiers: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """``dossiers`` are ``views.dossier_detail`` dicts."""
    out = []
    for dossier in dossiers:
        fields = dossier.get("fields", {})
        row = []
        for key, _label in columns(rules):
            value = dossier.get(key) if key in dict(BASE_COLUMNS) else fields.get(key)
            if key == "status":
                value = wording.label(wording.DOSSIER_STATUS_LABELS, value)
            # Text that looks like a formula must stay text in a spreadsheet.
            row.append(_defuse_formula(cell_text(value)))
        out.append(row)
    return out


def to_csv(rules: Rules, dossiers: Sequence[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow([label for _key, label in columns(rules)])
    writer.writerows(rows(rules, dossiers))
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(rules: Rules, dossiers: Sequence[dict[str, Any]]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Dossiers"
    sheet.append([label for _key, label in columns(rules)])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows(rules, dossiers):
        sheet.append(row)
    sheet.freeze_panes = "B2"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _defuse_formula(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
