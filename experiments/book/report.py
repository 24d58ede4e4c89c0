"""Collects the book's worked numbers from the chapter modules and writes the report.

Each module in `experiments.book.chapters` exposes `records() -> list[Record]`; modules are
discovered by name, so a new chapter module joins the report by existing. The report is written
as `book_report.md` (errata first, then every record by chapter) and `book_report.json`.

Chapters run in float64 (x64 is switched on before they are imported) and, with `workers` > 1,
in separate processes: most of their time is XLA compiling the many small eager operations of
the worked examples, which is single-threaded, so two processes on two cores halve the wall time.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import pkgutil
import re
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import jax

from experiments.book import chapters
from experiments.book.records import STATUSES, Record


def chapter_names() -> list[str]:
    """The chapter modules' names, in file-name order (`collect` puts them in book order)."""
    return sorted(info.name for info in pkgutil.iter_modules(chapters.__path__))


def chapter_modules() -> list[Any]:
    """The chapter modules, in file-name order."""
    return [importlib.import_module(f"{chapters.__name__}.{name}") for name in chapter_names()]


def run_chapter(name: str) -> tuple[str, list[Record]]:
    """(title, records) of one chapter module, computed in float64."""
    jax.config.update("jax_enable_x64", True)
    module = importlib.import_module(f"{chapters.__name__}.{name}")
    title = (module.__doc__ or module.__name__).strip().splitlines()[0]
    records = module.records()
    if not records:
        raise RuntimeError(f"{module.__name__}.records() returned no records")
    return title, records


def section_key(section: str) -> tuple[int, ...]:
    """Sort key of a section label: "7.4.2 (eq. 7.14)" -> (7, 4, 2); unnumbered labels last."""
    match = re.search(r"\d+(?:\.\d+)*", section)
    return tuple(int(part) for part in match.group().split(".")) if match else (10**6,)


def collect(workers: int = 1) -> list[tuple[str, list[Record]]]:
    """Runs every chapter module; returns (chapter title, records) pairs in book order.

    Args:
      workers: processes to spread the chapters over (1: run them in this process).

    Modules are ordered by the section of their first record, so a chapter split over several
    modules (e.g. 7.1-7.2 and 7.3) reads in the book's order whatever the file names.
    """
    names = chapter_names()
    if workers == 1:
        collected = [run_chapter(name) for name in names]
    else:
        # "spawn": a forked child would inherit JAX's threads mid-flight
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            collected = list(pool.map(run_chapter, names))
    return sorted(collected, key=lambda item: section_key(item[1][0].section))


def summarize(records: Iterable[Record]) -> dict[str, int]:
    counts = Counter(record.status for record in records)
    return {"checked": sum(counts.values()), **{status: counts[status] for status in STATUSES}}


def summary_line(summary: dict[str, int]) -> str:
    return (
        f"Checked {summary['checked']} printed numbers and statements: "
        f"{summary['match']} match, {summary['erratum']} errata, "
        f"{summary['ambiguous']} ambiguous."
    )


def _format(value: Any) -> str:
    """One markdown table cell: floats to 6 significant digits, pipes and newlines escaped."""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(records: Iterable[Record]) -> list[str]:
    lines = [
        "| Section | Quantity | Book | Computed | Status | Note |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        cells = [r.section, r.quantity, r.book_value, r.computed_value, r.status, r.note]
        lines.append("| " + " | ".join(_format(cell) for cell in cells) + " |")
    return lines


def to_markdown(collected: list[tuple[str, list[Record]]]) -> str:
    everything = [record for _, records in collected for record in records]
    summary = summarize(everything)
    lines = [
        "# Book reproduction report",
        "",
        "Every worked number of *Mathematical Foundations of Deep Learning and Embodied",
        "Intelligence* recomputed with this library's functions (`python -m experiments.book`).",
        "A printed value matches when it is within one unit of its last printed digit of ours;",
        "an erratum gives the correct value and the cause.",
        "",
        f"**{summary_line(summary)}**",
        "",
        "## Errata",
        "",
        *_table(r for r in everything if r.status == "erratum"),
        "",
        "## Ambiguous",
        "",
        *_table(r for r in everything if r.status == "ambiguous"),
        "",
        "## All records by chapter",
    ]
    for title, records in collected:
        lines += ["", f"### {title}", "", *_table(records)]
    return "\n".join(lines) + "\n"


def write(out_dir: Path, collected: list[tuple[str, list[Record]]]) -> dict[str, int]:
    """Writes `book_report.md` and `book_report.json` to `out_dir`; returns the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    everything = [record for _, records in collected for record in records]
    summary = summarize(everything)
    payload = {
        "summary": summary,
        "chapters": [
            {"title": title, "records": [r.to_json() for r in records]}
            for title, records in collected
        ],
    }
    (out_dir / "book_report.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out_dir / "book_report.md").write_text(to_markdown(collected))
    return summary
