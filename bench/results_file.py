"""bench/RESULTS.md: each benchmark rewrites its own section and leaves the others as they are."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(section: str, body: str, results: Path = RESULTS) -> None:
    """Replace (or add) the section headed `section` (e.g. "## Generator") with `body`."""
    text = results.read_text(encoding="utf-8") if results.exists() else "# Benchmarks\n"
    start = text.find(section + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(section))
        text = text[:start] + body.rstrip("\n") + "\n\n" + (text[end + 1 :] if end >= 0 else "")
    results.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
