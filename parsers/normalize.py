"""Normalisation of the values read from a dossier d'intention.

Applicants write dates, amounts, phone numbers and choices in many ways; the
database and the JSON output want one form per field, as the fields of
``config/rules.toml`` say (``docs/admin.md``, "Les champs du dossier
d'intention"). Every function here is pure and
says *why* it could not normalise a value (``Normalised.reason``), so the
service can tell staff what it did not understand instead of guessing.

Choice fields (thematique, criteria, category, nature) are matched on folded
words (accents, case and punctuation ignored), with a light plural strip and
a fuzzy comparison for long words, which absorbs OCR noise.
"""

from __future__ import annotations

import difflib
import re
from calendar import monthrange
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parsers.text import fold, nfc

if TYPE_CHECKING:
    from parsers.rules import Choice, Rules


@dataclass(frozen=True)
class Normalised:
    """A normalised value, or None with the reason it could not be normalised."""

    value: Any
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None and self.value != [] and self.value != ""


# --------------------------------------------------------------------------
# Words


_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Folded words of ``text``: punctuation, accents and case dropped."""
    return _WORD.findall(fold(text))


def _stem(word: str) -> str:
    # French plurals: "transports" = "transport", "loisirs" = "loisir".
    if len(word) > 3 and word[-1] in "sx":
        return word[:-1]
    return word


def _same_word(a: str, b: str) -> bool:
    if a == b or _stem(a) == _stem(b):
        return True
    # OCR noise ("envirormement"): only long words, where a near miss is safe.
    if min(len(a), len(b)) >= 6:
        return difflib.SequenceMatcher(None, a, b).ratio() >= 0.85
    return False


def _find_phrase(tokens: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    if not n:
        return False
    for start in range(len(tokens) - n + 1):
        if all(_same_word(tokens[start + i], phrase[i]) for i in range(n)):
            return True
    return False


def _phrases(choice_key: str, choice: Choice, extra: Iterable[str] = ()) -> list[list[str]]:
    texts = [choice.label, *choice.synonyms, *extra, choice_key.replace("_", " ")]
    # Printed labels are "Habitat – Environnement" or "Bâti / Espace public":
    # each half also names the choice.
    parts: list[str] = []
    for text in texts:
        parts.append(text)
        parts.extend(p for p in re.split(r"\s[–—/-]\s|/", text) if p.strip() != text)
    seen: list[list[str]] = []
    for part in parts:
        tokens = [t for t in words(part) if not t.isdigit() or part.strip().isdigit()]
        if tokens and tokens not in seen:
            seen.append(tokens)
    return seen


def _best_choices(
    text: str, choices: Mapping[str, Choice], extra: Mapping[str, Iterable[str]] | None = None
) -> tuple[list[str], int]:
    """Keys whose phrases cover the most words of ``text``, and that coverage."""
    tokens = words(text)
    if not tokens:
        return [], 0
    best: list[str] = []
    best_cover = 0
    for key, choice in choices.items():
        cover = 0
        for phrase in _phrases(key, choice, (extra or {}).get(key, ())):
            if tokens == phrase:
                cover = max(cover, 1000)  # the whole text is this choice
            elif _find_phrase(tokens, phrase):
                cover = max(cover, len(phrase))
        if cover > best_cover:
            best, best_cover = [key], cover
        elif cover and cover == best_cover:
            best.append(key)
    return best, best_cover


def _digit_choice(text: str, choices: Mapping[str, Choice]) -> str | None:
    """Choices printed as "1 - Initiative réalisée": a bare "1" or "2" picks one."""
    folded = fold(text).strip(" .-)")
    for key, choice in choices.items():
        match = re.match(r"(\d+)\b", fold(choice.label))
        if match and folded == match.group(1):
            return key
    return None


# --------------------------------------------------------------------------
# Choices


def _choices_of(kind: str, rules: Rules) -> tuple[Mapping[str, Choice], dict[str, list[str]]]:
    if kind == "thematique":
        extra = {key: list(theme.sub_themes) for key, theme in rules.thematiques.items()}
        return rules.thematiques, extra
    source = {"category": rules.categories, "nature": rules.natures, "criteria": rules.criteria}
    return source[kind], {}


def first_choice(text: str, kind: str, rules: Rules) -> str | None:
    """The option named first in ``text`` ("Durable Innovante" after one tick: durable)."""
    choices, extra = _choices_of(kind, rules)
    tokens = words(text)
    best: tuple[int, int, str] | None = None
    for key, choice in choices.items():
        for phrase in _phrases(key, choice, extra.get(key, ())):
            n = len(phrase)
            for start in range(len(tokens) - n + 1):
                if all(_same_word(tokens[start + i], phrase[i]) for i in range(n)):
                    candidate = (start, -n, key)
                    if best is None or candidate < best:
                        best = candidate
                    break
    return best[2] if best else None


def thematique_key(text: str, rules: Rules) -> Normalised:
    """The thematique key named by ``text`` (name, synonym or sub-theme)."""
    if not words(text):
        return Normalised(None, "empty")
    extra = {key: theme.sub_themes for key, theme in rules.thematiques.items()}
    keys, _ = _best_choices(text, rules.thematiques, extra)
    if len(keys) == 1:
        return Normalised(keys[0])
    if keys:
        names = " / ".join(rules.thematiques[k].label for k in keys)
        return Normalised(None, f"ambiguous thematique '{text.strip()}' ({names})")
    return Normalised(None, f"thematique not recognised: '{text.strip()}'")


def _single_choice(text: str, choices: Mapping[str, Choice], what: str) -> Normalised:
    if not words(text):
        return Normalised(None, "empty")
    direct = _digit_choice(text, choices)
    if direct:
        return Normalised(direct)
    keys, _ = _best_choices(text, choices)
    if len(keys) == 1:
        return Normalised(keys[0])
    if keys:
        return Normalised(None, f"ambiguous {what}: '{text.strip()}'")
    return Normalised(None, f"{what} not recognised: '{text.strip()}'")


def category_key(text: str, rules: Rules) -> Normalised:
    """``realisee`` or ``projet``."""
    return _single_choice(text, rules.categories, "category")


def nature_key(text: str, rules: Rules) -> Normalised:
    """``public``, ``prive``, ``associatif`` or ``particulier``."""
    return _single_choice(text, rules.natures, "nature")


def criteria_keys(text: str, rules: Rules) -> Normalised:
    """Every criterion named in ``text``, in the order of the rules."""
    tokens = words(text)
    if not tokens:
        return Normalised(None, "empty")
    found = []
    for key, choice in rules.criteria.items():
        if any(_find_phrase(tokens, phrase) for phrase in _phrases(key, choice)):
            found.append(key)
    if not found:
        return Normalised(None, f"criteria not recognised: '{text.strip()}'")
    return Normalised(found)


# --------------------------------------------------------------------------
# Dates

MONTHS = {
    "janvier": 1,
    "janv": 1,
    "jan": 1,
    "fevrier": 2,
    "fevr": 2,
    "fev": 2,
    "mars": 3,
    "avril": 4,
    "avr": 4,
    "mai": 5,
    "juin": 6,
    "juillet": 7,
    "juil": 7,
    "aout": 8,
    "septembre": 9,
    "sept": 9,
    "sep": 9,
    "octobre": 10,
    "oct": 10,
    "novembre": 11,
    "nov": 11,
    "decembre": 12,
    "dec": 12,
}
_MONTH_RE = "|".join(sorted(MONTHS, key=len, reverse=True))
_DAY_MONTH_YEAR = re.compile(
    rf"\b(\d{{1,2}})\s*(?:er)?\s+({_MONTH_RE})\.?\s+(\d{{4}})\b", re.IGNORECASE
)
_MONTH_YEAR = re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{4}})\b", re.IGNORECASE)
_NUMERIC = re.compile(
    r"(?<![\d/.-])(\d{1,2})\s*([/.-])\s*(\d{1,2})\s*\2\s*(\d{4}|\d{2})(?![\d/.-])"
)
_ISO = re.compile(r"(?<![\d-])(\d{4})-(\d{2})-(\d{2})(?![\d-])")
_FULL_MONTH = re.compile(
    r"\b(?:janvier|fevrier|mars|avril|mai|juin|juillet|aout|septembre|octobre|novembre|decembre)\b"
)
_NUMERIC_MONTH = re.compile(r"(?<![\d/.-])(\d{1,2})\s*/\s*(\d{4})(?![\d/.-])")


def _valid_day(year: int, month: int, day: int) -> bool:
    return 1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= monthrange(year, month)[1]


def parse_date(text: str) -> Normalised:
    """``YYYY-MM-DD`` when the text names one day, ``YYYY-MM`` for one month, else the text."""
    raw = nfc(text).strip()
    # OCR reads "1er" as "ler" or "Ier".
    folded = re.sub(r"\b[lI]er\b", "1er", fold(raw))
    found: list[str] = []
    spans: list[tuple[int, int]] = []

    def add(value: str, span: tuple[int, int]) -> None:
        if any(s <= span[0] < e or s < span[1] <= e for s, e in spans):
            return
        spans.append(span)
        if value not in found:
            found.append(value)

    for m in _ISO.finditer(folded):
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if _valid_day(y, mo, d):
            add(f"{y:04d}-{mo:02d}-{d:02d}", m.span())
    for m in _DAY_MONTH_YEAR.finditer(folded):
        d, mo, y = int(m.group(1)), MONTHS[m.group(2).lower()], int(m.group(3))
        if _valid_day(y, mo, d):
            add(f"{y:04d}-{mo:02d}-{d:02d}", m.span())
    for m in _NUMERIC.finditer(folded):
        d, mo, y = int(m.group(1)), int(m.group(3)), m.group(4)
        year = int(y) + 2000 if len(y) == 2 else int(y)
        if _valid_day(year, mo, d):
            add(f"{year:04d}-{mo:02d}-{d:02d}", m.span())
    for m in _MONTH_YEAR.finditer(folded):
        add(f"{int(m.group(2)):04d}-{MONTHS[m.group(1).lower()]:02d}", m.span())
    for m in _NUMERIC_MONTH.finditer(folded):
        mo, y = int(m.group(1)), int(m.group(2))
        if 1 <= mo <= 12:
            add(f"{y:04d}-{mo:02d}", m.span())
    # "du 15 mars au 30 juin 2025" names a month outside the one date found:
    # that is a range, kept as written.
    stray_month = any(
        not any(s <= m.start() < e for s, e in spans) for m in _FULL_MONTH.finditer(folded)
    )
    if len(found) == 1 and not stray_month:
        return Normalised(found[0])
    if not raw:
        return Normalised(None, "empty")
    # A range, several dates or a season: keep the applicant's words.
    return Normalised(raw, None if not found else "several dates: kept as written")


# --------------------------------------------------------------------------
# Amounts

_AMOUNT = re.compile(
    r"(?<![\w.,])(\d{1,3}(?:[ \u00a0\u202f\u2009'.]\d{3})+(?:,\d{1,2})?"
    r"|\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?"
    r"|\d+(?:[.,]\d+)?)"
    r"\s*(k|m|millions?|milliers?|mille)?\b\s*(€|eur|euros?)?",
    re.IGNORECASE,
)
_MULTIPLIERS = {"k": 1000, "mille": 1000, "millier": 1000, "milliers": 1000, "m": 1_000_000}


def _number(token: str) -> float:
    token = re.sub(r"[ \u00a0\u202f\u2009']", "", token)
    if "," in token and "." in token:
        # The last separator is the decimal one: 12.500,00 or 12,500.00.
        if token.rfind(",") > token.rfind("."):
            token = token.replace(".", "").replace(",", ".")
        else:
            token = token.replace(",", "")
    elif "," in token:
        # French decimal comma, except groups of three ("1,500,000").
        several = token.count(",") > 1
        token = token.replace(",", "") if several else token.replace(",", ".")
    elif "." in token:
        parts = token.split(".")
        # "12.500" and "1.500.000" are French thousands; "12.5" a decimal.
        if all(len(p) == 3 for p in parts[1:]):
            token = token.replace(".", "")
    return float(token)


def parse_amount(text: str) -> Normalised:
    """A number of euros: ``12 500 €``, ``12.500,00 EUR``, ``15 k€``, ``1,5 M€``."""
    folded = nfc(text).replace("\u2009", " ")
    amounts: list[float] = []
    for m in _AMOUNT.finditer(folded):
        number, unit, currency = m.group(1), (m.group(2) or "").lower(), m.group(3)
        try:
            value = _number(number)
        except ValueError:
            continue
        if unit.startswith("million"):
            unit = "m"
        # A bare "m" is metres ("800 m²"); only "M€" and "millions" are money.
        if m.group(2) and m.group(2).lower() == "m" and not currency:
            continue
        value *= _MULTIPLIERS.get(unit, 1)
        amounts.append(value)
    distinct = sorted(set(amounts))
    if not distinct:
        return Normalised(None, f"amount not recognised: '{text.strip()}'")
    if len(distinct) > 1:
        # "entre 10 000 et 15 000 €": the largest is the budget to plan for.
        biggest = distinct[-1]
        return Normalised(_tidy_number(biggest), "several amounts: the largest is kept")
    return Normalised(_tidy_number(distinct[0]))


def _tidy_number(value: float) -> int | float:
    rounded = round(value, 2)
    return int(rounded) if rounded == int(rounded) else rounded


# --------------------------------------------------------------------------
# Contact details

EMAIL_RE = re.compile(
    r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
)
_EMAIL_CANDIDATE = re.compile(r"[^\s<>()\[\],;:\"'«»]+@[^\s<>()\[\],;:\"'«»]+")


def parse_email(text: str) -> Normalised:
    """The first e-mail address in ``text``, lower-cased, if it is well-formed."""
    raw = nfc(text).strip()
    if not raw:
        return Normalised(None, "empty")
    cleaned = re.sub(r"^mailto:", "", raw, flags=re.I)
    # OCR and word processors insert spaces around "@" and dots.
    cleaned = re.sub(r"\s*@\s*", "@", cleaned)
    cleaned = re.sub(r"(@[\w.-]+?)\s*\.\s+(?=[a-z]{2,}\b)", r"\1.", cleaned, flags=re.I)
    match = _EMAIL_CANDIDATE.search(cleaned)
    if not match:
        return Normalised(None, f"invalid e-mail address: '{raw}'")
    address = match.group(0).strip(".").lower()
    if not EMAIL_RE.match(address) or ".." in address:
        return Normalised(None, f"invalid e-mail address: '{raw}'")
    return Normalised(address)


_PHONE_CANDIDATE = re.compile(r"(?:\+|00)?\d[\d\s().\-\u00a0]{7,}\d")


def parse_phone(text: str) -> Normalised:
    """E.164 (``+33321000000``) for French numbers; other numbers as ``+CC…``; else the text."""
    raw = nfc(text).strip()
    if not raw:
        return Normalised(None, "empty")
    for match in _PHONE_CANDIDATE.finditer(raw):
        candidate = match.group(0).replace("(0)", "")
        plus = candidate.startswith("+")
        digits = re.sub(r"\D", "", candidate)
        if plus or digits.startswith("00"):
            digits = digits[2:] if digits.startswith("00") else digits
            if digits.startswith("33"):
                national = digits[2:].lstrip("0")
                if len(national) == 9:
                    return Normalised("+33" + national)
                continue
            if 8 <= len(digits) <= 15:
                return Normalised("+" + digits)
            continue
        # Two numbers written side by side: the first one counts.
        if len(digits) % 10 == 0 and digits.startswith("0"):
            digits = digits[:10]
        if len(digits) == 10 and digits.startswith("0") and digits[1] != "0":
            return Normalised("+33" + digits[1:])
    return Normalised(raw, f"phone number not recognised, kept as written: '{raw}'")


# --------------------------------------------------------------------------
# Text


def clean_text(text: str, *, multiline: bool = False) -> str:
    """NFC, trimmed; single-line fields in one line."""
    text = nfc(text).replace("\u00a0", " ").replace("\r", "")
    # "Mont- Liébaut", "Jean- Pierre": a hyphen split by OCR or by wrapping.
    text = re.sub(r"(\w)-[ \t]+(?=[A-ZÀ-Ý])", r"\1-", text)
    # "Nord-Pas-" + "de-Calais": a line that ends inside a hyphenated word
    # goes on without a space; the hyphen belongs to the word.
    text = re.sub(r"(\w)-[ \t]*\n[ \t]*(?=\w)", r"\1-", text)
    if multiline:
        lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
        out: list[str] = []
        for line in lines:
            if line or (out and out[-1]):
                out.append(line)
        # OCR leaves specks and dashes after the last word.
        return re.sub(r"[\s\-–—_|•·]+$", "", "\n".join(out)).strip()
    # Stray brackets and bars at the edges are box borders read by OCR.
    text = re.sub(r"\s+", " ", text).strip(" \t\n;,{}|_[]")
    # A lone final dot on a one-line answer is punctuation, not content.
    if text.endswith(".") and text.count(".") == 1 and not text.endswith(".."):
        text = text[:-1].rstrip()
    return text


def _text(text: str, rules: Rules) -> Normalised:
    value = clean_text(text)
    return Normalised(value or None, None if value else "empty")


def _multiline(text: str, rules: Rules) -> Normalised:
    value = clean_text(text, multiline=True)
    return Normalised(value or None, None if value else "empty")


_NORMALISERS = {
    "text": _text,
    "multiline": _multiline,
    "thematique": thematique_key,
    "criteria": criteria_keys,
    "category": category_key,
    "nature": nature_key,
    "date": lambda text, rules: parse_date(clean_text(text)),
    "amount": lambda text, rules: parse_amount(text),
    "email": lambda text, rules: parse_email(text),
    "phone": lambda text, rules: parse_phone(text),
}


def normalize_value(kind: str, text: str, rules: Rules) -> Normalised:
    """Normalise ``text`` as a field of ``kind`` (a ``FieldKind`` value)."""
    return _NORMALISERS.get(str(kind), _text)(text, rules)
