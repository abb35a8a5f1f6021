"""Text from files (titles, artists, genres, paths) is data: made safe wherever it leaves wavelist."""
from __future__ import annotations

import html
import re
import unicodedata

# ANSI / VT escape sequences: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), and two-byte escapes
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|\x9b[0-?]*[ -/]*[@-~]")


# Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they reorder the text shown
# after them ("Trojan Source"), so a title could make the line around it read differently from what it holds.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _controls_to_spaces(text: str) -> str:
    """Every control, line or paragraph separator character (Unicode Cc, Zl, Zp) as a space; bidirectional
    controls (:data:`_BIDI_CONTROLS`) left out."""
    return "".join("" if c in _BIDI_CONTROLS else " " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
                   for c in text)


def one_line(text: object) -> str:
    """``text`` on one line: control characters (newlines included) become spaces, bidirectional controls are
    left out. For M3U8 and tables."""
    return _controls_to_spaces(str(text))


def for_terminal(text: object) -> str:
    """``text`` without terminal escape sequences, control characters or bidirectional controls: it cannot move
    the cursor, change colours, retitle the window, add lines or reorder the line it is on."""
    return _controls_to_spaces(_ESCAPES.sub("", str(text)))


# What JSON may hold raw in a string but a terminal would act on: DEL and the C1 controls (U+0080-U+009F, CSI
# among them), the line and paragraph separators and the bidirectional controls (JSON escapes only U+0000-U+001F).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def for_json(text: str) -> str:
    """``json.dumps`` output with :data:`_JSON_UNSAFE` characters written as ``\\uXXXX`` escapes: the same JSON
    value, safe to print (those characters can only stand inside strings)."""
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def for_html(text: object) -> str:
    """``text`` HTML-escaped (plotly renders hover text and legend names as HTML)."""
    return html.escape(one_line(text), quote=True)


# emphasis, code, links, images, tables, HTML and entities, maths, headings; and what makes a bare address a link
# (``http:``, ``www.``, ``a@b``) or Streamlit's ``:red[...]`` colours and ``:icon:`` shortcodes
_MARKDOWN = re.compile(r"([\\`*_\[\]!|<>~$&#:.@])")


def for_markdown(text: object) -> str:
    """``text`` with Markdown punctuation escaped, so a title or the text of the page's address shows as written
    and never becomes a link, an image, a heading or a colour (Streamlit renders headings, captions, warnings and
    ``st.write`` as Markdown)."""
    return _MARKDOWN.sub(r"\\\1", for_terminal(text))
