"""Text from outside ampkit (paths, sample JSON, study files, a command's output) made safe to print.

Such text may hold rich markup (``[/x]`` makes rich raise ``MarkupError``, ``[link=URL]`` renders a
hyperlink the user did not write) and terminal control sequences (ESC ``[2J`` clears the screen,
OSC ``]0;`` retitles the window, a bell, bidi overrides that reorder what is shown, a newline that
forges a second line). Every place that prints such text goes through one of these:

- :func:`visible`: control characters shown as Python-style escapes (``\\x1b``, ``\\n``,
  ``\\u202e``), the undecodable bytes of a file name (surrogate escapes) as ``\\xNN``; plain text
  for ``print`` or ``console.print(..., markup=False)``;
- :func:`markup`: :func:`visible`, then rich's markup escaped: for text inside a markup string
  (a table cell or title, ``console.print`` with markup on);
- :func:`plain_column`: a progress-bar text column that fills its fields without markup, visibly.

Printable text (accents, CJK, emoji) is left as it is.
"""

from __future__ import annotations

import functools
import re
from typing import Any

#: C0 and C1 controls, DEL, line/paragraph separators, bidi controls, lone surrogates.
_HIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode: show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(value: Any) -> str:
    """``str(value)`` with every control character replaced by its escape (see the module doc)."""
    text = str(value)
    return _HIDDEN.sub(_shown, text) if _HIDDEN.search(text) else text


def markup(value: Any) -> str:
    """``value`` as literal text inside rich markup: :func:`visible`, then ``[`` tags escaped."""
    from rich.markup import escape

    return escape(visible(value))


def cells(*values: Any) -> list[str]:
    """:func:`markup` of each value: a table row whose cells show exactly the text given."""
    return [markup(v) for v in values]


@functools.cache
def _plain_column_type() -> type:
    from rich.progress import Task, TextColumn
    from rich.text import Text

    class PlainColumn(TextColumn):
        """A ``TextColumn`` whose formatted text is shown literally (no markup) and visibly."""

        def render(self, task: Task) -> Text:
            text = visible(self.text_format.format(task=task))
            return Text(text, style=self.style, justify=self.justify)

    return PlainColumn


def plain_column(text_format: str, style: str = "none") -> Any:
    """A rich progress column showing ``text_format`` (``{task.description}``...) literally."""
    return _plain_column_type()(text_format, style=style, markup=False)
