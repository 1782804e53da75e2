"""User strings are data: the one place where text is escaped for each output format.

Case ids, method names, prompts, file paths and messages reach HTML, Markdown, LaTeX and CSV files.
Every writer (``reports/``, ``trace_bench.study``, ``trace_bench.audit``, the CSVs of a run) escapes
through these functions, one per format:

* :func:`html_text` / :func:`html_attr`: HTML text and double-quoted attribute values;
* :func:`json_script`: JSON data inside ``<script type="application/json">`` (``<``, ``>``, ``&``,
  U+2028 / U+2029 as ``\\uXXXX``: no ``</script>`` or ``<!--`` can end or hide the element);
* :func:`markdown_text` / :func:`markdown_cell` / :func:`markdown_code`: CommonMark / GFM inline text,
  a table cell (``|`` escaped) and a code span (fence longer than any backtick run inside);
* :func:`latex_text` / :func:`latex_code`: LaTeX text that compiles with ``pdflatex`` (T1 or OT1):
  the ten special characters, ``< > |`` and the backtick, a leading ``[`` or ``*`` (not read as an argument of a
  row end ``\\\\``) and the ligatures `````, ``--``, ``''``, ``,,``, ``<<``, ``>>``; characters ``pdflatex``'s
  ``utf8`` input encoding cannot typeset are written as ``[U+XXXX]`` (so a Cyrillic look-alike of a
  Latin letter shows, and an 80-character CJK case id does not stop the document);
* :func:`csv_cell` / :func:`csv_value`: CSV text cells safe to open in a spreadsheet (OWASP "CSV
  injection"): a text cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets a leading ``'``
  (a negative number such as ``-0.5`` stays a number); :func:`csv_value` undoes it exactly, so the
  run's own CSVs read back to the same strings (``csv_value(csv_cell(s)) == s`` for every ``s``).

:func:`plot_text` does the same for Matplotlib titles and labels (``$`` would start mathtext), and
:func:`terminal_text` for console lines (no escape sequence reaches the terminal).

Prose (our own messages and notes) may hold Markdown code spans written with :func:`code` and user
strings embedded with :func:`literal`;
:func:`prose_spans` splits them the CommonMark way, and :func:`prose_html`, :func:`prose_markdown`
and :func:`prose_latex` render a prose string with the user data inside it escaped.

Control characters (C0 except tab / newline / CR, DEL, C1) are shown as their Unicode control
pictures in HTML and Markdown (``\\x00`` -> U+2400) and as ``[U+0000]`` in LaTeX; newlines become
spaces where they would end a table row or paragraph.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

# ----------------------------------------------------------------------------- control characters
_C0 = {c: chr(0x2400 + c) for c in range(0x20)}
_C0[0x7F] = "\u2421"


def visible_controls(text: str, *, keep_whitespace: bool = True) -> str:
    """Control characters as Unicode control pictures (NUL -> U+2400); C1 controls as U+FFFD. With
    ``keep_whitespace`` tab, newline and CR stay as they are, else they become spaces."""
    out = []
    for ch in str(text):
        o = ord(ch)
        if ch in "\t\n\r":
            out.append(ch if keep_whitespace else " ")
        elif o < 0x20 or o == 0x7F:
            out.append(_C0[o])
        elif 0x80 <= o < 0xA0 or 0xD800 <= o < 0xE000:  # C1 controls, lone surrogates
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


# ----------------------------------------------------------------------------- HTML
def html_text(text: Any) -> str:
    """Text content of an HTML element: ``& < > " '`` as entities, control characters visible."""
    return html.escape(visible_controls(str(text)), quote=True)


def html_attr(text: Any) -> str:
    """A double-quoted attribute value: as :func:`html_text`, newlines and tabs as spaces."""
    return html.escape(visible_controls(str(text), keep_whitespace=False), quote=True)


_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_script(obj: Any, **dumps: Any) -> str:
    """``obj`` as JSON to place inside ``<script type="application/json">``: still valid JSON (the
    escapes are JSON string escapes), but with no ``<``, ``>`` or ``&`` left, so neither ``</script>``
    nor ``<!--`` can end or swallow the element; U+2028 / U+2029 escaped for JavaScript parsers."""
    text = json.dumps(obj, ensure_ascii=False, **dumps)
    return re.sub("[<>&\u2028\u2029]", lambda m: _SCRIPT_UNSAFE[m.group(0)], text)


# ----------------------------------------------------------------------------- Markdown
#: always backslash-escaped in Markdown text (CommonMark: any ASCII punctuation may be escaped)
_MD_ALWAYS = set("\\`*$~")


def markdown_text(text: Any) -> str:
    """Inline Markdown text that renders as itself (CommonMark / GFM): ``\\ ` * $ ~`` escaped; ``_``
    unless inside a word; ``<`` where it could open raw HTML or an autolink; ``&`` where it
    could start an entity; ``]`` where it could close a link (``](``, ``][``); newlines as spaces,
    control characters visible. For inline use (never at the start of a line, where ``#``, ``-`` or
    ``>`` would start a block: the writers always put their own text first)."""
    s = visible_controls(str(text), keep_whitespace=False)
    out = []
    n = len(s)
    for i, ch in enumerate(s):
        prev = s[i - 1] if i else " "
        nxt = s[i + 1] if i + 1 < n else " "
        if ch in _MD_ALWAYS:
            out.append("\\" + ch)
        elif ch == "_" and not (prev.isalnum() and nxt.isalnum()):
            out.append("\\_")
        elif ch == "<" and (nxt.isalpha() or nxt in "!/?"):
            out.append("\\<")
        elif ch == "&" and re.match(r"&#?[A-Za-z0-9]+;", s[i:]):
            out.append("\\&")
        elif ch == "]" and nxt in "([":
            out.append("\\]")
        else:
            out.append(ch)
    return "".join(out)


def markdown_cell(text: Any) -> str:
    """A GFM table cell: :func:`markdown_text` with ``|`` escaped."""
    return markdown_text(text).replace("|", "\\|")


def markdown_code(text: Any, *, cell: bool = False) -> str:
    """A code span holding ``text`` verbatim: the fence is one backtick longer than the longest
    run inside; padded with a space where the content starts or ends with a backtick or space.
    ``cell``: inside a GFM table (``|`` escaped, which GFM allows inside code spans)."""
    body = _fenced(visible_controls(str(text), keep_whitespace=False))
    return body.replace("|", "\\|") if cell else body


def _fenced(s: str) -> str:
    run = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (run + 1)
    pad = " " if s and (s[0] in "` " or s[-1] in "` ") and s.strip(" ") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


# ----------------------------------------------------------------------------- LaTeX
_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
                "`": r"\textasciigrave{}"}
#: symbols of our own texts and common data, as math or text commands (safe in T1 and OT1)
_TEX_SYMBOL = {"↑": r"$\uparrow$", "↓": r"$\downarrow$", "→": r"$\rightarrow$", "←": r"$\leftarrow$",
               "–": "--", "—": "---", "∞": r"$\infty$", "±": r"$\pm$", "×": r"$\times$", "·": r"$\cdot$",
               "−": "$-$", "≤": r"$\leq$", "≥": r"$\geq$", "≈": r"$\approx$", "≠": r"$\neq$", "µ": r"$\mu$",
               "μ": r"$\mu$", "κ": r"$\kappa$", "…": r"\ldots{}", "\u00a0": "~", "‘": "`", "’": "'",
               "“": "``", "”": "''", "°": r"$^\circ$", "÷": r"$\div$",
               "†": r"\textdagger{}", "‡": r"\textdaggerdbl{}", "§": r"\S{}"}
#: Latin-1 and Latin Extended-A letters that pdflatex's utf8 input encoding does not define
_TEX_UNDEFINED = {0x126, 0x127, 0x138, 0x13F, 0x140, 0x149, 0x166, 0x167, 0x17F}
_LIGATURE = set("-',<>")


def _tex_char(ch: str) -> str:
    if ch in _TEX_SPECIAL:
        return _TEX_SPECIAL[ch]
    if ch in _TEX_SYMBOL:
        return _TEX_SYMBOL[ch]
    o = ord(ch)
    if ch in "\t\n\r":
        return " "
    if 0x20 <= o < 0x7F or (0xA0 <= o < 0x180 and o not in _TEX_UNDEFINED and o != 0xAD):
        return ch
    return "{[}U+%04X]" % o


def latex_text(text: Any) -> str:
    """LaTeX text that typesets as ``text`` under pdflatex (see the module docstring). A leading ``[``
    or ``*`` is braced: after ``\\\\`` it would be read as the row end's optional argument or star."""
    s = str(text)
    out = ["{}"] if s[:1] in ("[", "*") else []
    for i, ch in enumerate(s):
        out.append(_tex_char(ch))
        if ch in _LIGATURE and i + 1 < len(s) and s[i + 1] == ch:
            out.append("{}")  # break the ligature: -- stays two hyphens, '' two quotes, << two signs
    return "".join(out)


def latex_code(text: Any) -> str:
    """``text`` in typewriter type (``\\texttt{...}``), escaped as :func:`latex_text`."""
    return r"\texttt{" + latex_text(text) + "}"


# ----------------------------------------------------------------------------- terminal
def terminal_text(text: Any) -> str:
    """Text for a terminal line: control characters (ESC of an ANSI sequence included) as their Unicode
    control pictures, tab / newline / CR as spaces: a user string cannot move the cursor or recolour."""
    return visible_controls(str(text), keep_whitespace=False)


# ----------------------------------------------------------------------------- plots
def plot_text(text: Any) -> str:
    """Text for a Matplotlib label or title: ``$`` escaped (no mathtext is parsed from data), a
    leading ``_`` kept visible in legends (Matplotlib hides labels starting with it), control
    characters visible."""
    s = visible_controls(str(text), keep_whitespace=False).replace("$", r"\$")
    return "\u200b" + s if s.startswith("_") else s


# ----------------------------------------------------------------------------- prose with code spans
def code(text: Any) -> str:
    """``text`` as a Markdown code span, to embed a user string (a method name, a command) in prose
    that :func:`prose_spans` splits again exactly (each format escapes it when rendering)."""
    return _fenced(str(text))


def literal(text: Any) -> str:
    """``text`` to embed in prose as plain text: backticks and backslashes escaped (CommonMark),
    so no code span starts inside it; :func:`prose_spans` reads it back exactly."""
    return re.sub(r"([\\`])", r"\\\1", str(text))


def prose_spans(text: str) -> list[tuple[bool, str]]:
    """``(is_code, text)`` segments of a prose string, split at CommonMark code spans: a run of N
    backticks opens a span that the next run of exactly N backticks closes (unmatched runs are
    literal text); one space is stripped from both ends of a span that has one at each end; outside
    spans ``\\``` and ``\\\\`` are a literal backtick and backslash."""
    s = str(text)
    out: list[tuple[bool, str]] = []
    buf = []
    i, n = 0, len(s)
    while i < n:
        if s[i] == "\\" and i + 1 < n and s[i + 1] in "\\`":  # backslash escapes (see literal())
            buf.append(s[i + 1])
            i += 2
            continue
        if s[i] != "`":
            buf.append(s[i])
            i += 1
            continue
        j = i
        while j < n and s[j] == "`":
            j += 1
        run = j - i
        k = j
        close = -1
        while k < n:
            if s[k] == "`":
                m = k
                while m < n and s[m] == "`":
                    m += 1
                if m - k == run:
                    close = k
                    break
                k = m
            else:
                k += 1
        if close < 0:
            buf.append(s[i:j])
            i = j
            continue
        body = s[j:close]
        if len(body) >= 2 and body[0] == " " and body[-1] == " " and body.strip(" "):
            body = body[1:-1]
        if buf:
            out.append((False, "".join(buf)))
            buf = []
        out.append((True, body))
        i = close + run
    if buf:
        out.append((False, "".join(buf)))
    return out


def prose_html(text: str) -> str:
    """A prose string as HTML: code spans as ``<code>``, everything escaped."""
    return "".join(f"<code>{html_text(t)}</code>" if c else html_text(t) for c, t in prose_spans(text))


def prose_markdown(text: str, *, cell: bool = False) -> str:
    """A prose string as Markdown: code spans kept (fences recomputed), text escaped."""
    esc = markdown_cell if cell else markdown_text
    return "".join(markdown_code(t, cell=cell) if c else esc(t) for c, t in prose_spans(text))


def prose_latex(text: str) -> str:
    """A prose string as LaTeX: code spans in ``\\texttt``, everything escaped."""
    return "".join(latex_code(t) if c else latex_text(t) for c, t in prose_spans(text))


# ----------------------------------------------------------------------------- CSV
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def csv_cell(text: Any) -> str:
    """One CSV text cell, neutralised for spreadsheets: a leading ``=``, ``+``, ``-``, ``@``, tab or CR
    gets a ``'`` in front (a negative number such as ``-0.5`` is left as it is), as does a leading
    ``'`` followed by one of those or by another ``'`` (so :func:`csv_value` can undo it exactly).
    Numbers are written by :func:`trace_bench.results.files.csv_text` (deterministic, never quoted)."""
    s = "" if text is None else str(text)
    return "'" + s if _quoted(s) else s


def _quoted(s: str) -> bool:
    """Does :func:`csv_cell` put a ``'`` in front of text ``s``?"""
    if s.startswith(_FORMULA):
        return not _NUMBER.fullmatch(s)
    return s.startswith("'") and len(s) > 1 and (s[1] == "'" or s[1:].startswith(_FORMULA))


def csv_value(cell: Any) -> Any:
    """The string :func:`csv_cell` was given (its neutralising ``'`` removed); other values as they are."""
    if isinstance(cell, str) and cell.startswith("'") and _quoted(cell[1:]):
        return cell[1:]
    return cell
