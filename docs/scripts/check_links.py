"""Check every internal link of the built HTML docs: each ``href`` / ``src`` that points inside the site must
name an existing file, and its ``#fragment`` an ``id`` on that page. External links (``http:``, ``mailto:``
...) are not fetched (Sphinx's ``linkcheck`` does that, and needs a network). Links to a missing docutils
automatic id (``#id3``) are left to the build's own warnings (see :data:`AUTO_ID`).

Usage: ``python docs/scripts/check_links.py docs/_build/html``; exit 1 listing every broken link.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

#: docutils' automatic ids (``#id3``): a missing one is the link of a markup problem to its system message,
#: which Sphinx reports as a warning of its own (fatal, or listed as pending by docs/conf.py)
AUTO_ID = re.compile(r"^id\d+$")


class Page(HTMLParser):
    """The ids a page defines and the links it makes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key) and (key == "id" or tag == "a"):
                self.ids.add(str(a[key]))
        for key in ("href", "src"):
            if a.get(key) and not (tag == "link" and "preconnect" in str(a.get("rel", ""))):
                self.links.append(str(a[key]))


def parse(path: Path, cache: dict[Path, Page]) -> Page:
    if path not in cache:
        page = Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = page
    return cache[path]


def broken_links(root: Path) -> list[str]:
    root = root.resolve()
    cache: dict[Path, Page] = {}
    problems = []
    for html in sorted(root.rglob("*.html")):
        for link in parse(html, cache).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("data:", "javascript:")):
                continue  # external, or inline
            target_path, fragment = urldefrag(link)
            target = html if not target_path else (html.parent / unquote(urlsplit(target_path).path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            where = html.relative_to(root)
            if not target.exists():
                problems.append(f"{where}: {link} -> no such file")
                continue
            if root not in target.parents and target != root:
                problems.append(f"{where}: {link} -> outside the site")
                continue
            if fragment and target.suffix == ".html" and unquote(fragment) not in parse(target, cache).ids:
                if AUTO_ID.match(fragment):
                    continue  # docutils' link from a markup problem to its (unrendered) message: the build warned
                problems.append(f"{where}: {link} -> no id {fragment!r} on {target.relative_to(root)}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_links.py BUILT_HTML_FOLDER", file=sys.stderr)
        return 2
    root = Path(argv[0])
    if not (root / "index.html").is_file():
        print(f"check_links: {root}: no index.html (build the docs first: make docs)", file=sys.stderr)
        return 2
    problems = broken_links(root)
    for p in problems:
        print(f"broken link: {p}", file=sys.stderr)
    n = sum(1 for _ in root.rglob("*.html"))
    print(f"check_links: {n} pages, {len(problems)} broken internal link(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
