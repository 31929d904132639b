"""Render a Snakemake HTML report in headless Chromium and read back what it shows.

The report is a JavaScript app whose results are embedded as data URIs. A copy of the report
gets a small script appended that decodes every embedded image
with the browser's own decoder, draws it on a canvas and records its size and how many
distinct colours a sample of its pixels has; ``--dump-dom`` then returns the rendered page
with that record in it. So a figure counts as present only if Chromium can draw it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

CHECK_SCRIPT = """
<script>
document.addEventListener("DOMContentLoaded", () => {
  const record = document.createElement("pre");
  record.id = "pcam-figure-check";
  document.body.appendChild(record);
  const found = [];
  const images = Object.entries(results).filter(([, r]) => r.mime_type.startsWith("image/"));
  const publish = () => { record.textContent = JSON.stringify(found); };
  publish();
  for (const [path, result] of images) {
    const entry = {path: path, width: 0, height: 0, colours: 0};
    found.push(entry);
    const image = new Image();
    image.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      const context = canvas.getContext("2d");
      context.drawImage(image, 0, 0);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      const colours = new Set();
      for (let i = 0; i < pixels.length; i += 4 * 31) {
        colours.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
      }
      Object.assign(entry, {width: canvas.width, height: canvas.height, colours: colours.size});
      publish();
    };
    image.onerror = () => { entry.error = "the browser could not decode it"; publish(); };
    image.src = result.data_uri;
  }
});
</script>
"""


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)


def run_chromium(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary on PATH")
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def rendered_report(report: Path, workdir: Path) -> tuple[str, list[dict]]:
    """(visible text of the rendered app, one record per embedded image)."""
    page = workdir / "report_checked.html"
    html = report.read_text(encoding="utf-8")
    head, tag, tail = html.rpartition("</body>")  # the last one: the app's JS holds others
    if not tag:
        raise ValueError(f"{report}: no </body>; not an HTML report")
    page.write_text(head + CHECK_SCRIPT + tag + tail, encoding="utf-8")
    done = run_chromium(["--virtual-time-budget=20000", "--dump-dom", page.as_uri()])
    dom = done.stdout
    match = re.search(r'<pre id="pcam-figure-check">(.*?)</pre>', dom, flags=re.S)
    figures = json.loads(match.group(1).replace("&quot;", '"')) if match else []
    app = dom.find('id="app"')  # the rendered app, after the inlined scripts
    body = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom[app:], flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))
    return text, figures


def screenshot(page_uri: str, out: Path, width: int = 1400, height: int = 1800) -> None:
    run_chromium([f"--screenshot={out}", f"--window-size={width},{height}",
                  "--virtual-time-budget=20000", page_uri])
