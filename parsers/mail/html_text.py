"""HTML turned into text, linearly.

``html.parser`` is quadratic on unterminated markup on Python 3.11 (``"<a" *
500_000`` did not finish in five minutes), so it is only fed complete tags
and text cut by a linear regex (``_simplify_html``).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from parsers.mail.charsets import _clean_text

# --------------------------------------------------------------------------
# HTML to text
# --------------------------------------------------------------------------

_HTML_TOKEN = re.compile(
    r"(?P<comment><!--.*?(?:-->|\Z))"
    r"|(?P<decl><[!?][^<>]*>?)"
    r"|(?P<tag></?(?P<name>[A-Za-z][A-Za-z0-9:-]*)(?:[^<>\"']|\"[^\"<]*\"|'[^'<]*')*>?)"
    # Text runs on through a '<' that starts no markup ("3 < 4", "</ ").
    r"|(?P<text>(?:[^<]|<(?![A-Za-z!?]|/[A-Za-z]))+)"
    r"|(?P<lt><)",
    re.S,
)
_SKIPPED_ELEMENTS = ("script", "style", "title", "template")
_SKIP_UNTIL = {name: re.compile(rf"</{name}\s*>", re.I) for name in _SKIPPED_ELEMENTS}
_BLOCK_TAGS = frozenset(
    {
        *("br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre"),
        *("table", "caption", "thead", "tbody", "tfoot", "ul", "ol", "dl", "dt", "dd"),
        *("blockquote", "section", "article", "header", "footer", "address", "center"),
        *("form", "fieldset", "figure", "figcaption", "nav", "main", "aside"),
    }
)
_CELL_TAGS = frozenset({"td", "th"})
_HTML_SPACE = re.compile(r"[ \t\n\r\f\xa0]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


class _HtmlText(HTMLParser):
    """Collects text and line breaks; fed only what _simplify_html produced."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self._out.append("\n")
        elif tag in _CELL_TAGS:
            self._out.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self._out.append("\n")

    def handle_data(self, data: str) -> None:
        self._out.append(_HTML_SPACE.sub(" ", data))

    def text(self) -> str:
        lines = (line.strip() for line in "".join(self._out).split("\n"))
        return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def _html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(_simplify_html(html))
    parser.close()
    return _clean_text(parser.text())


def _simplify_html(html: str) -> str:
    """Markup reduced to complete bare tags and text, in one linear pass.

    Only the tags that make line breaks are kept; comments, declarations,
    attributes and script/style/title content go, and a '<' that starts no
    markup becomes '&lt;'. html.parser then never meets an unterminated
    construct, the case where it rescans its buffer.
    """
    pieces: list[str] = []
    pos, end = 0, len(html)
    while pos < end:
        token = _HTML_TOKEN.match(html, pos)
        if token is None:  # cannot happen: '<' alone always matches
            break
        pos = token.end()
        if token["tag"]:
            name = token["name"].lower()
            closing = token["tag"].startswith("</")
            if not closing and name in _SKIP_UNTIL:
                found = _SKIP_UNTIL[name].search(html, pos)
                pos = found.end() if found else end
                continue
            if name in _BLOCK_TAGS or name in _CELL_TAGS:
                pieces.append(f"</{name}>" if closing else f"<{name}>")
        elif token["text"]:
            pieces.append(token["text"].replace("<", "&lt;"))
        elif token["lt"]:
            pieces.append("&lt;")
    return "".join(pieces)
