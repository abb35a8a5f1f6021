"""Text from files (titles, artists, genres, paths) is data: made safe wherever it leaves wavelist."""
from __future__ import annotations

import html
import re
import unicodedata

# ANSI / VT escape sequences: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), and two-byte escapes
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|\x9b[0-?]*[ -/]*[@-~]")


def _controls_to_spaces(text: str) -> str:
    """Every control, line or paragraph separator character (Unicode Cc, Zl, Zp) as a space."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


def one_line(text: object) -> str:
    """``text`` on one line: control characters (newlines included) become spaces. For M3U8 and tables."""
    return _controls_to_spaces(str(text))


def for_terminal(text: object) -> str:
    """``text`` without terminal escape sequences or control characters: it cannot move the cursor, change
    colours, retitle the window or add lines."""
    return _controls_to_spaces(_ESCAPES.sub("", str(text)))


def for_html(text: object) -> str:
    """``text`` HTML-escaped (plotly renders hover text and legend names as HTML)."""
    return html.escape(one_line(text), quote=True)


_MARKDOWN = re.compile(r"([\\`*_\[\]!|<>~$])")  # emphasis, code, links, images, tables, HTML, maths


def for_markdown(text: object) -> str:
    """``text`` with Markdown punctuation escaped, so a title shows as written and never becomes a link, an
    image or a heading (Streamlit renders headings, captions and ``st.write`` as Markdown)."""
    return _MARKDOWN.sub(r"\\\1", for_terminal(text))
