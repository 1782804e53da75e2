"""Screenshots of the HTML report and its slice viewer for the docs, made from a demo output (never by hand).

Usage::

    trace-bench demo --out /tmp/demo-out
    python docs/scripts/screenshots.py /tmp/demo-out [--out docs/_static/screenshots]

Writes ``report.png`` (Table 1) and ``viewer.png`` (the slice viewer) with headless Chromium. The report is
one self-contained file, so a copy of it in a temporary folder, with a few lines of script that hide all but
the section once the page has loaded, is what the browser opens: the demo output is left untouched. Without a
Chromium on the machine (Debian: ``apt-get install chromium``) the script says so and exits 0, leaving the
committed screenshots as they are.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
#: section id in report.html -> output file, and the window size of the shot (CSS pixels)
SHOTS = {"table1": ("report.png", (1100, 430)), "viewer": ("viewer.png", (1100, 470))}
#: flags for a headless run on a machine without a display or a network (no sandbox: CI runs as root)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--force-device-scale-factor=1", "--virtual-time-budget=8000"]
#: shown alone: the element with the section's id and its following siblings up to the next of these tags
STOP = {"table1": ("TABLE", "H2", "H3"), "viewer": ("H2",)}
#: after load (and the viewer's own drawing), hide everything but that run of elements, so the shot starts
#: at the top of the page whatever the browser does with scrolling
ISOLATE = """<script>addEventListener('load', () => setTimeout(() => {{
  const start = document.getElementById({target!r}); if (!start) return;
  const stop = {stop!r}; const keep = new Set([start]);
  for (let e = start.nextElementSibling; e && !stop.includes(e.tagName); e = e.nextElementSibling) keep.add(e);
  for (let node = start; node && node !== document.body; node = node.parentElement) {{
    for (const sib of Array.from(node.parentElement.children)) {{
      if (sib !== node && !(node === start && keep.has(sib)) && sib.tagName !== 'SCRIPT') sib.style.display = 'none';
    }}
  }}
  window.scrollTo(0, 0);
}}, 500));</script>"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def shoot(browser: str, report: Path, target: str, dest: Path, size: tuple[int, int], tmp: Path) -> None:
    page = tmp / f"{target}.html"
    html = report.read_text(encoding="utf-8")
    script = ISOLATE.format(target=target, stop=list(STOP[target]))
    page.write_text(html.replace("</body>", script + "</body>", 1), encoding="utf-8")
    cmd = [browser, *FLAGS, f"--user-data-dir={tmp / ('profile-' + target)}", f"--window-size={size[0]},{size[1]}",
           f"--screenshot={dest}", page.as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if r.returncode != 0 or not dest.is_file():
        raise SystemExit(f"screenshots: chromium failed on {target} (exit {r.returncode}): {r.stderr.strip()[-500:]}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("demo_out", type=Path, help="output folder of `trace-bench demo` (holds report.html)")
    ap.add_argument("--out", type=Path, default=DOCS / "_static" / "screenshots", help="where the PNG files go")
    args = ap.parse_args(argv)
    report = args.demo_out / "report.html"
    if not report.is_file():
        print(f"screenshots: {report}: no such file (run `trace-bench demo --out {args.demo_out}` first)",
              file=sys.stderr)
        return 2
    browser = chromium()
    if browser is None:
        print("screenshots: no Chromium on this machine (Debian: apt-get install chromium); screenshots unchanged")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tb-shots-") as tmp:
        for target, (name, size) in SHOTS.items():
            shoot(browser, report, target, args.out / name, size, Path(tmp))
            print(f"screenshots: {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
