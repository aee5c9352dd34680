"""The Chinese guide mirrors the English one: same pages, same headings in the same order and at the same levels.

Headings are read from the reStructuredText sources (title adornments: an underline, optionally an overline, of
one punctuation character repeated); the level of an adornment style is the order in which it first appears in
the file, as docutils decides it. The API reference (``docs/api/``) is generated from docstrings and exists once.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
ZH = DOCS / "zh"
_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}\s*$")


def headings(path: Path) -> list[tuple[int, str]]:
    """``(level, title)`` for every section title of an reST file, in order (level 1 = the page title)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    styles: list[tuple[str, bool]] = []
    found: list[tuple[int, str]] = []
    in_literal = False
    i = 0
    while i < len(lines) - 1:
        line, below = lines[i], lines[i + 1]
        if line.strip().endswith("::") or line.lstrip().startswith(".. code-block::"):
            in_literal = True
        elif in_literal and line and not line[0].isspace():
            in_literal = False
        title = line.strip()
        match = _ADORNMENT.match(below)
        if not in_literal and title and not line[0].isspace() and match and not _ADORNMENT.match(line):
            overline = i > 0 and bool(_ADORNMENT.match(lines[i - 1])) and lines[i - 1][0] == match.group(1)
            style = (match.group(1), overline)
            if style not in styles:
                styles.append(style)
            found.append((styles.index(style) + 1, title))
            i += 2
            continue
        i += 1
    return found


def english_pages() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.rst"))


def test_parser_sees_levels(tmp_path: Path) -> None:
    """The parser itself: a page title, two sections and a subsection; a literal block is no heading."""
    sample = tmp_path / "sample.rst"
    sample.write_text("Title\n=====\n\nA\n---\n\ntext::\n\n   Not\n   ---\n\nB\n---\n\nB.1\n~~~\n", encoding="utf-8")
    assert headings(sample) == [(1, "Title"), (2, "A"), (2, "B"), (3, "B.1")]


def test_the_guide_has_every_chapter() -> None:
    names = {p.stem for p in english_pages()}
    chapters = {"concepts", "configuration", "litestar", "transactions", "read-write-split", "queries"}
    chapters |= {"performance", "errors", "monitoring", "migrations", "testing", "faq", "index"}
    assert chapters <= names


@pytest.mark.parametrize("page", english_pages(), ids=lambda p: p.name)
def test_chinese_counterpart_has_the_same_headings(page: Path) -> None:
    counterpart = ZH / page.name
    assert counterpart.is_file(), f"docs/zh/{page.name} is missing"
    english, chinese = headings(page), headings(counterpart)
    assert len(english) >= 2, f"{page.name}: no sections found"
    assert len(chinese) == len(english), (
        f"{page.name}: {len(english)} headings in English, {len(chinese)} in Chinese\n"
        f"en: {[t for _, t in english]}\nzh: {[t for _, t in chinese]}"
    )
    assert [level for level, _ in chinese] == [level for level, _ in english], f"{page.name}: heading levels differ"


def test_no_chinese_page_without_english_original() -> None:
    extra = {p.name for p in ZH.glob("*.rst")} - {p.name for p in english_pages()}
    assert not extra, f"Chinese pages without an English original: {sorted(extra)}"
