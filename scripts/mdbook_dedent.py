#!/usr/bin/env python3
"""mdBook preprocessor: dedents fenced code blocks.

`{{#include file:anchor}}` keeps the included lines' source indentation, so a snippet taken from
inside a function starts eight columns in and scrolls sideways. This removes, from every fenced
code block, the indentation all its non-blank lines share beyond the fence's own (a block inside
a list item keeps the item's indentation). book.toml runs it after mdBook's `links`
preprocessor, which does the including.
"""
import json
import re
import sys

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})")


def dedent_blocks(text: str) -> str:
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent, fence = len(m.group(1)), m.group(2)
        close = re.compile(r"^\s*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        body = lines[i + 1 : j]
        widths = [len(l) - len(l.lstrip(" ")) for l in body if l.strip()]
        cut = min(widths) - indent if widths else 0
        out.append(lines[i])
        out.extend(l[cut:] if cut > 0 and l.strip() else (l if l.strip() else "") for l in body)
        if j < len(lines):
            out.append(lines[j])
        i = j + 1
    return "\n".join(out)


def walk(items):
    for item in items:
        if isinstance(item, dict) and "Chapter" in item:
            chapter = item["Chapter"]
            chapter["content"] = dedent_blocks(chapter["content"])
            walk(chapter.get("sub_items", []))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "supports":
        return 0  # only text changes: every renderer
    _context, book = json.load(sys.stdin)
    walk(book.get("items", book.get("sections", [])))
    json.dump(book, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
