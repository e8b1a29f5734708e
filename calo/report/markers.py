"""Blocks of a Markdown file that a command writes: everything between
``<!-- results:<name> -->`` and ``<!-- /results:<name> -->``.

Every file is read and checked before any is written; a marker without its partner, a name
twice in one file or a block inside another is a one-line error naming the file and the
marker, and then nothing is written. Files are replaced atomically.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from calo.errors import CaloError
from calo.paths import atomic_path

__all__ = ["MarkedFile", "MarkerError", "block_markers", "framed", "read_marked", "write_marked"]

_MARKER = re.compile(r"<!-- (/?)results:([a-z0-9][a-z0-9-]*) -->")


class MarkerError(CaloError):
    """A malformed pair of result markers."""


def block_markers(name: str) -> tuple[str, str]:
    """The opening and closing marker of block ``name``."""
    return f"<!-- results:{name} -->", f"<!-- /results:{name} -->"


@dataclass(frozen=True)
class MarkedFile:
    """A Markdown file and the content span of each of its blocks (name -> (start, end))."""

    path: Path
    text: str
    blocks: dict[str, tuple[int, int]]

    def content(self, name: str) -> str:
        start, end = self.blocks[name]
        return self.text[start:end]

    def replaced(self, contents: Mapping[str, str]) -> str:
        """The text with the named blocks' contents replaced (others kept as they are)."""
        pieces, position = [], 0
        for name, (start, end) in sorted(self.blocks.items(), key=lambda item: item[1]):
            if name in contents:
                pieces += [self.text[position:start], framed(contents[name])]
                position = end
        return "".join(pieces) + self.text[position:]


def framed(content: str) -> str:
    """A block's content as it stands between its markers: on lines of its own."""
    return "\n" + content.strip("\n") + "\n"


def read_marked(path: Path) -> MarkedFile:
    """``path`` with its blocks; MarkerError when a marker pair is malformed."""
    text = path.read_text()
    blocks: dict[str, tuple[int, int]] = {}
    open_name: str | None = None
    open_end = 0
    for match in _MARKER.finditer(text):
        closing, name = match.group(1) == "/", match.group(2)
        marker = match.group(0)
        if not closing:
            if open_name is not None:
                raise MarkerError(f"{path}: {marker} opens inside block {open_name!r}, "
                                  f"which is not closed: add {block_markers(open_name)[1]}")
            if name in blocks:
                raise MarkerError(f"{path}: {marker} appears twice: one block per name")
            open_name, open_end = name, match.end()
        elif open_name != name:
            raise MarkerError(f"{path}: {marker} closes a block that is not open: "
                              f"add {block_markers(name)[0]} before it")
        else:
            blocks[name] = (open_end, match.start())
            open_name = None
    if open_name is not None:
        raise MarkerError(f"{path}: {block_markers(open_name)[0]} is never closed: "
                          f"add {block_markers(open_name)[1]}")
    return MarkedFile(path, text, blocks)


def write_marked(paths: Sequence[Path],
                 content_for: Callable[[str, Path], str | None]) -> list[tuple[Path, str]]:
    """Fill the blocks of every file with ``content_for(name, file)`` (None keeps a block as
    it is). Every file is read, checked and filled before any is written; a file is rewritten,
    atomically, only if it changed. Returns the (file, block) pairs whose content changed."""
    pages = [read_marked(path) for path in paths]
    updates: list[tuple[MarkedFile, str]] = []
    changed: list[tuple[Path, str]] = []
    for page in pages:
        contents = {name: content for name in page.blocks
                    if (content := content_for(name, page.path)) is not None}
        changed += [(page.path, name) for name, content in contents.items()
                    if framed(content) != page.content(name)]
        text = page.replaced(contents)
        if text != page.text:
            updates.append((page, text))
    for page, text in updates:
        with atomic_path(page.path) as temporary:
            temporary.write_text(text)
    return changed
