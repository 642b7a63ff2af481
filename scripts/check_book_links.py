#!/usr/bin/env python3
"""Fails if the built mdBook has a broken relative link or a missing #anchor.

Usage: python3 scripts/check_book_links.py book/book
"""
import html.parser
import pathlib
import sys
import urllib.parse


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
    for page in root.rglob("*.html"):
        c = Collector()
        c.feed(page.read_text(encoding="utf-8"))
        pages[page.resolve()] = c
    broken = []
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
            if url.fragment and target in pages and url.fragment not in pages[target].ids:
                broken.append(f"{page.relative_to(root.resolve())}: {href} (no such anchor)")
    for b in broken:
        print("broken link:", b)
    print(f"checked {sum(len(c.links) for c in pages.values())} links in {len(pages)} pages")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "book/book")))
