"""Reddit post text -> the plain text a reader sees, every change counted for the data card.

    from data.text import clean_text, plain_text
    changes = Counter()
    body = plain_text(clean_text(selftext), changes)   # changes["markdown_links"] == 1, ...

Reddit stores what the author typed: HTML entities (`&amp;`, `&gt;`) from the API and the dumps, and
markdown (`**bold**`, `*italics*`, `[text](url)`, `# heading`, `---` rules). A policy trained on raw
markdown learns to write `**`; a reward model reads the markup as content. So posts, author TL;DRs and
comment responses all go through `plain_text`:

| rule (counter key)   | before                  | after          |
| -------------------- | ----------------------- | -------------- |
| `markdown_links`     | `[the video](http://..)`| `the video`    |
| `markdown_emphasis`  | `**bold**`, `*it*`, `__u__`, `~~s~~` | `bold`, `it`, `u`, `s` |
| `markdown_headings`  | `## Update`             | `Update`       |
| `markdown_rules`     | a line of `---`, `***`, `___`, `===` | (removed) |
| `markdown_code`      | `` `rm -rf` ``          | `rm -rf`       |
| `markdown_escapes`   | `\\*`, `\\_`             | `*`, `_`       |

Kept on purpose: bare URLs (a reader sees them, and "here is the picture: http://imgur..." is often the
post's point), list bullets and `>` quote signs (line structure, which prompt truncation cuts at), and
emphasis markers inside URLs (`/r/iron_man_3/`). HTML entities are undone by `clean_text` (counted by
`count_entities`). The rules are regular expressions, not a markdown parser: a parser renders paragraphs
and drops the line breaks that prompt truncation cuts at, and here each rule must be counted on its own.
"""

from __future__ import annotations

import html
import re
from collections import Counter

_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\[\]()]*(?:\([^\s()]*\)[^\s<>\[\]()]*)*", re.IGNORECASE)
# [text](url "title"): one level of parentheses inside the url (wikipedia's "Foo_(film)").
_LINK = re.compile(r"\[([^\]\n]*)\]\(\s*<?((?:[^()\s<>]|\([^()\s]*\))*)>?(?:\s+\"[^\"\n]*\")?\s*\)")
# Emphasis: a run of 1-3 `*` or `_` (or `~~`), non-space inside, not inside a word, within one paragraph.
_SPAN = r"(?=\S)((?:[^\n]|\n(?![ \t]*\n))*?)(?<=\S)"
_EMPHASIS = re.compile(
    r"(?<![\w*\\])(\*{1,3})" + _SPAN + r"(?<!\\)\1(?![\w*])"
    r"|(?<![\w\\])(_{1,3})" + _SPAN + r"(?<!\\)\3(?!\w)"
    r"|(?<!\\)~~" + _SPAN + r"~~"
)
# "## Title ##" -> "Title" (a quote sign before it stays).
_HEADING = re.compile(r"^([ \t]*(?:>[ \t]*)*)#{1,6}[ \t]*([^#\s][^\n]*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*(?:([-*_])(?:[ \t]*\1){2,}|={3,})[ \t]*$", re.MULTILINE)
_CODE = re.compile(r"(?<![`\\])`([^`\n]+)`(?!`)")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>~^|])")


def clean_text(text: str) -> str:
    """Undo Reddit's HTML escaping, normalize newlines, drop trailing spaces and runs of blank lines."""
    text = html.unescape(text).replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def count_entities(raw: str, changes: Counter[str]) -> None:
    """`changes["html_entities"] += 1` for a text whose HTML entities `clean_text` undoes (`&amp;` -> `&`)."""
    if _ENTITY.search(raw) and html.unescape(raw) != raw:
        changes["html_entities"] += 1


def _outside_urls(text: str, fn) -> tuple[str, int]:
    """Apply `fn(segment) -> (segment, n)` to the text between bare URLs (an URL's `_` is not emphasis)."""
    out, total, last = [], 0, 0
    if "://" not in text and "www." not in text.lower():
        return fn(text)
    for m in _URL.finditer(text):
        seg, n = fn(text[last : m.start()])
        out += [seg, m.group(0)]
        total, last = total + n, m.end()
    seg, n = fn(text[last:])
    return "".join(out + [seg]), total + n


def _strip_emphasis(segment: str) -> tuple[str, int]:
    if "*" not in segment and "_" not in segment and "~~" not in segment:
        return segment, 0  # most text: skip the regex
    total = 0
    while True:  # nested emphasis (`***bold italic***`, `**a *b* c**`) takes more than one pass
        segment, n = _EMPHASIS.subn(lambda m: m.group(2) or m.group(4) or m.group(5) or "", segment)
        total += n
        if n == 0:
            return segment, total


def _link_text(m: re.Match[str]) -> str:
    """A link's text; a link without text shows its URL, or nothing for a subreddit emote `[](/smile)`."""
    text, url = m.group(1).strip(), m.group(2)
    return text or (url if _URL.match(url) else "")


def plain_text(text: str, changes: Counter[str] | None = None) -> str:
    """Markdown -> plain text (see the module docstring for the rules); `changes[rule] += 1` for each rule
    that changed something. Expects `clean_text` output; returns it cleaned again."""
    steps = (
        ("markdown_rules", lambda t: _RULE.subn("", t)),
        ("markdown_links", lambda t: _LINK.subn(_link_text, t)),
        ("markdown_emphasis", lambda t: _outside_urls(t, _strip_emphasis)),
        ("markdown_headings", lambda t: _HEADING.subn(r"\1\2", t)),
        ("markdown_code", lambda t: _CODE.subn(r"\1", t)),
        ("markdown_escapes", lambda t: _outside_urls(t, lambda s: _ESCAPE.subn(r"\1", s))),
    )
    for name, step in steps:
        text, n = step(text)
        if n and changes is not None:
            changes[name] += 1
    return clean_text(text)
