"""The book report runs end to end and its errata are real, explained and computed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.book import records, report

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def book_report(tmp_path_factory) -> dict:
    """Runs `python -m experiments.book` once, as a user would (it switches on float64)."""
    out = tmp_path_factory.mktemp("book")
    result = subprocess.run(
        [sys.executable, "-m", "experiments.book", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads((out / "book_report.json").read_text())
    payload["stdout"] = result.stdout
    payload["markdown"] = (out / "book_report.md").read_text()
    return payload


def all_records(payload: dict) -> list[dict]:
    return [r for chapter in payload["chapters"] for r in chapter["records"]]


def find(payload: dict, section: str, quantity: str) -> dict:
    matches = [
        r
        for r in all_records(payload)
        if r["section"].startswith(section) and r["quantity"].startswith(quantity)
    ]
    assert len(matches) == 1, f"{section} {quantity}: {len(matches)} records"
    return matches[0]


def test_summary_counts_every_record_and_is_printed(book_report):
    everything = all_records(book_report)
    summary = book_report["summary"]
    assert summary["checked"] == len(everything) >= 400
    assert summary["match"] + summary["erratum"] + summary["ambiguous"] == summary["checked"]
    assert summary["erratum"] >= 40  # the chapter 6-7 chains alone drift from L^(1) onward
    assert report.summary_line(summary) in book_report["stdout"]
    assert f"**{report.summary_line(summary)}**" in book_report["markdown"]


def test_every_record_is_well_formed_and_every_erratum_explained(book_report):
    for r in all_records(book_report):
        assert set(r) == {"section", "quantity", "book_value", "computed_value", "status", "note"}
        assert r["status"] in records.STATUSES
        if r["status"] != "match":
            assert len(r["note"]) > 10, r


def test_chapters_appear_in_book_order(book_report):
    first_sections = [chapter["records"][0]["section"] for chapter in book_report["chapters"]]
    keys = [report.section_key(section) for section in first_sections]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("section", "quantity", "status", "computed"),
    [
        ("eq. 6.23", "L^(1)", "erratum", 1.1233311),  # book 1.1223: −ln(0.3252) = 1.1233
        ("10.2.2 eq. 10.6", "v̄1 = ∂L/∂x1", "match", 140.0),
        ("16.2.2 eq. 16.10", "camera dimensions", "erratum", 42336.0),  # book 42,258
        ("19.2 eq. 19.3", "|V_action|", "match", 1792.0),
    ],
)
def test_landmark_numbers(book_report, section, quantity, status, computed):
    record = find(book_report, section, quantity)
    assert record["status"] == status
    assert record["computed_value"] == pytest.approx(computed, rel=1e-6)
