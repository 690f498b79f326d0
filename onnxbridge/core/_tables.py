"""Plain-text tables, for reports printed to a console and for Markdown in notes and docs."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["markdown_table", "text_table"]


def _widths(header: Sequence[object], rows: Sequence[Sequence[object]]) -> list[int]:
    return [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]


def text_table(header: Sequence[object], rows: Sequence[Sequence[object]], indent: str = "  ") -> list[str]:
    """Fixed-width lines, columns two spaces apart, each line starting with ``indent``."""
    widths = _widths(header, rows)
    return [
        indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]


def markdown_table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table with aligned columns."""
    widths = _widths(header, rows)

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
