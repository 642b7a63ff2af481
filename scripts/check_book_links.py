#!/usr/bin/env python3
"""Fails if the built mdBook has a broken relative link or a missing #anchor, or a code block
whose every line is indented (an included snippet the dedent preprocessor missed).

Usage: python3 scripts/check_book_links.py book/book
"""
import html
import html.parser
import pathlib
import re
import sys
import urllib.parse

CODE = re.compile(r"<pre><code[^>]*>(.*?)</code></pre>", re.S)


def indented_blocks(text: str) -> list:
    """First lines of code blocks whose every non-blank line starts with whitespace."""
    found = []
    for m in CODE.finditer(text):
        body = html.unescape(re.sub(r"<[^>]+>", "", m.group(1)))
        lines = [l for l in body.split("\n") if l.strip()]
        if lines and all(l[0] in " \t" for l in lines):
            found.append(lines[0].strip()[:60])
    return found


class Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


def main(root: pathlib.Path) -> int:
    pages = {}
    broken = []
    api = (root / "api").resolve()
    others = {}
    for page in root.rglob("*.html"):
        if page.resolve().is_relative_to(api):
            continue  # rustdoc's own pages (scripts/build-docs.sh copies them in): links into them are checked
        c = Collector()
        text = page.read_text(encoding="utf-8")
        c.feed(text)
        pages[page.resolve()] = c
        for first in indented_blocks(text):
            broken.append(f"{page.relative_to(root)}: code block indented throughout, starting {first!r}")
    for page, c in pages.items():
        for href in c.links:
            url = urllib.parse.urlparse(href)
            if url.scheme or href.startswith("//") or href.startswith("mailto:"):
                continue  # external links are not checked (no network in CI)
            target = page if not url.path else (page.parent / urllib.parse.unquote(url.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(root.resolve())}: {href} (no such page)")
                continue
            ids = pages[target].ids if target in pages else None
            if ids is None and url.fragment and target.suffix == ".html":
                if target not in others:  # an API page: read only when a link points into it
                    others[target] = Collector()
                    others[target].feed(target.read_text(encoding="utf-8"))
                ids = others[target].ids
            if url.fragment and ids is not None and url.fragment not in ids:
                broken.append(f"{page.relative_to(root.resolve())}: {href} (no such anchor)")
    for b in broken:
        print("broken:", b)
    print(f"checked {sum(len(c.links) for c in pages.values())} links in {len(pages)} pages")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "book/book")))
