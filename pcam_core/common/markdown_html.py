"""The pipeline's own Markdown as a standalone HTML page, for the Snakemake report.

The report links a Markdown result as raw text; an HTML result opens as a page with real
tables. Only the subset pcam writes is supported (``#`` headings, pipe tables, ``-`` lists,
fenced code, paragraphs, ``**bold**``, ``*italic*`` and ```code```), so no Markdown
library is needed: anything else is shown as an escaped paragraph, never dropped.
"""

from __future__ import annotations

import html
import re

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def inline(text: str) -> str:
    """Escape, then the inline marks pcam uses: `code`, **bold**, *italic*."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![*\w])\*([^*\s][^*]*)\*(?!\*)", r"<em>\1</em>", text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> list[str]:
    header, rule, *rows = lines
    right = [c.endswith(":") for c in _cells(rule)]
    out = ["<table>", "<tr>" + "".join(f"<th>{inline(c)}</th>" for c in _cells(header)) + "</tr>"]
    for row in rows:
        cells = _cells(row)
        out.append("<tr>" + "".join(
            f'<td class="num">{inline(c)}</td>' if i < len(right) and right[i] else f"<td>{inline(c)}</td>"
            for i, c in enumerate(cells)) + "</tr>")
    return out + ["</table>"]


def markdown_to_html(markdown: str, title: str) -> str:
    body: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            body.append("<pre>" + html.escape("\n".join(lines[i + 1:end]), quote=False) + "</pre>")
            i = end + 1
        elif match := re.match(r"^(#{1,6}) (.*)$", line):
            level = len(match.group(1))
            body.append(f"<h{level}>{inline(match.group(2))}</h{level}>")
            i += 1
        elif line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1]):
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            body += _table(lines[i:end])
            i = end
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            body += ["<ul>", *items, "</ul>"]
        elif not line.strip():
            i += 1
        else:
            paragraph = [line]  # the first line always, so a stray "|" line cannot stall
            i += 1
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||- |```)", lines[i]):
                paragraph.append(lines[i])
                i += 1
            body.append(f"<p>{inline(' '.join(paragraph))}</p>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
