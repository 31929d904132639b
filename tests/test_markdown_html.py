"""The summary's Markdown as HTML: tables, headings, lists, code; nothing dropped or unescaped."""

from __future__ import annotations

from pcam_core.common.markdown_html import markdown_to_html

SUMMARY_LIKE = """# pcam summary — run `demo`

mIoU in percent, void ignored.

## Table 1 — activation maps

| variant | train | val |
|---|---:|---:|
| CAM (image labels) | 67.1 | 65.9 |
| **warn** <b> | — | 1.0 |

- **PASS** CAM < PCAM
- paper numbers: *quoted*

```yaml
run_name: demo
```
| a stray pipe line without a rule
"""


def test_tables_headings_lists_and_code_become_html():
    page = markdown_to_html(SUMMARY_LIKE, "t")
    assert "<h1>pcam summary — run <code>demo</code></h1>" in page
    assert "<h2>Table 1 — activation maps</h2>" in page
    assert "<tr><th>variant</th><th>train</th><th>val</th></tr>" in page
    assert '<tr><td>CAM (image labels)</td><td class="num">67.1</td><td class="num">65.9</td></tr>' in page
    assert "<td><strong>warn</strong> &lt;b&gt;</td>" in page  # escaped, never raw HTML
    assert "<li><strong>PASS</strong> CAM &lt; PCAM</li>" in page
    assert "<li>paper numbers: <em>quoted</em></li>" in page
    assert "<pre>run_name: demo</pre>" in page
    assert "<p>| a stray pipe line without a rule</p>" in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
