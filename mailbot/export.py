"""Spreadsheet exports of the dossiers for staff (CSV and XLSX).

One row per dossier, one column per field of ``rules.toml`` (in the form's
order, headed by the printed label), plus reference, status, dates, sender,
mailboxes and what is missing. Statuses and choices (thématique, criteria,
…) are worded by ``mailbot/wording.py``, times are local to the service.

CSV is written in UTF-8 with a BOM and ``;`` separators, which is what
French spreadsheet software opens correctly; text that looks like a formula
gets a leading apostrophe there. XLSX cells are typed instead: dates are
date cells with a number format, text is text (no apostrophe needed), and
columns have a width.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mailbot import wording
from mailbot.config import Rules
from parsers.checks import describe_missing

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
DATE_COLUMNS = frozenset({"received_at", "updated_at", "completed_at"})
XLSX_DATE_FORMAT = "DD/MM/YYYY HH:MM"
XLSX_MAX_WIDTH = 60  # characters; longer text wraps in its cell


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


def rows(rules: Rules, dossiers: Sequence[dict[str, Any]], *, zone: ZoneInfo) -> list[list[Any]]:
    """Typed cells (local datetimes, numbers, French text); ``dossiers`` are views dicts."""
    base = dict(BASE_COLUMNS)
    out = []
    for dossier in dossiers:
        fields = wording.worded_fields(dossier.get("fields", {}), rules)
        row = []
        for key, _label in columns(rules):
            value = dossier.get(key) if key in base else fields.get(key)
            if key == "status":
                value = wording.label(wording.DOSSIER_STATUS_LABELS, value)
            elif key == "missing":
                value = describe_missing(list(value or []), rules=rules)
            elif key in DATE_COLUMNS:
                local = wording.local_moment(value, zone)
                value = local.replace(tzinfo=None) if local is not None else None
            row.append(cell_text(value))
        out.append(row)
    return out


def to_csv(rules: Rules, dossiers: Sequence[dict[str, Any]], *, zone: ZoneInfo) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow([label for _key, label in columns(rules)])
    for row in rows(rules, dossiers, zone=zone):
        # Text that looks like a formula must stay text in a spreadsheet.
        writer.writerow([_defuse_formula(_csv_text(cell)) for cell in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _csv_text(cell: Any) -> Any:
    return f"{cell:%d/%m/%Y %H:%M}" if isinstance(cell, datetime) else cell


def to_xlsx(rules: Rules, dossiers: Sequence[dict[str, Any]], *, zone: ZoneInfo) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell.cell import TYPE_STRING
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Dossiers"
    headers = [label for _key, label in columns(rules)]
    sheet.append(headers)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    widths = [len(h) for h in headers]
    for number, row in enumerate(rows(rules, dossiers, zone=zone), start=2):
        for index, value in enumerate(row, start=1):
            cell = sheet.cell(row=number, column=index)
            cell.value = value
            if isinstance(value, str):
                # A typed string cell is never a formula: no apostrophe needed.
                cell.data_type = TYPE_STRING
                widths[index - 1] = max(widths[index - 1], len(value))
                if len(value) > XLSX_MAX_WIDTH:
                    cell.alignment = Alignment(wrap_text=True, vertical="top")
            elif isinstance(value, datetime):
                cell.number_format = XLSX_DATE_FORMAT
                widths[index - 1] = max(widths[index - 1], len(XLSX_DATE_FORMAT))
            else:
                widths[index - 1] = max(widths[index - 1], len(str(value)))
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = min(width, XLSX_MAX_WIDTH) + 2
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
