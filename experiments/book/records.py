"""Records of the book report: one printed number of the book against our computation.

Every worked number of the book becomes a `Record`: where it is printed (`section`), what it is
(`quantity`), the printed value, the value our library computes, a status and a one-line note.
The status is never typed by hand: `check` derives it by comparing the printed value, at the
precision it is printed with, to the computed one. Only an erratum's explanation (`why`) and an
ambiguity are written by people.

Tolerance rule. A printed value with n decimals matches when it is within one unit of its last
digit of the computed value (the book rounds intermediate results, which moves the last digit);
integers must match exactly. A caller can pass `rel_tol` for values the book marks as rough
("≈ 14000", "≈ 10^-30").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

Status = Literal["match", "erratum", "ambiguous"]
STATUSES: tuple[Status, ...] = ("match", "erratum", "ambiguous")


@dataclasses.dataclass(frozen=True)
class Record:
    """One printed number of the book and our value for it."""

    section: str
    quantity: str
    book_value: Any
    computed_value: Any
    status: Status
    note: str

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status != "match" and not self.note:
            raise ValueError(f"{self.section} {self.quantity}: a {self.status} needs a note")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _decimals(printed: str) -> int:
    """Number of decimals of a printed number: "0.6748" -> 4, "42" -> 0, "1.2e-5" -> 6."""
    text = printed.strip().lower()
    mantissa, _, exponent = text.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return decimals - int(exponent) if exponent else decimals


def _tolerance(printed: str, value: float, rel_tol: float | None) -> float:
    if rel_tol is not None:
        return rel_tol * abs(value)
    decimals = _decimals(printed)
    return 0.0 if decimals <= 0 else 10.0**-decimals


def _as_printed_list(book_value: str | Sequence[str]) -> list[str]:
    if isinstance(book_value, str):
        return [book_value]
    return [str(v) for v in book_value]


def _as_float_list(computed_value: Any) -> list[float]:
    array = np.asarray(computed_value, dtype=np.float64)
    return [float(v) for v in array.reshape(-1)]


def check(
    section: str,
    quantity: str,
    book_value: str | Sequence[str],
    computed_value: Any,
    *,
    note: str = "",
    why: str = "",
    rel_tol: float | None = None,
) -> list[Record]:
    """Compares printed numbers with computed ones; one record per printed number.

    Args:
      section: book section or equation, e.g. "6.4.5" or "eq. 6.23".
      quantity: what the number is, e.g. "L^(1), BCE loss of sample 1".
      book_value: the number as printed (a string, so its precision is known), or a sequence of
        them for a printed vector/matrix (flattened in row-major order).
      computed_value: our value(s), computed by library functions; same number of elements.
      note: one line for a match (how it was computed), optional.
      why: one line explaining an erratum: the correct value and the cause. Required when the
        comparison fails, so that no erratum is reported without an explanation.
      rel_tol: relative tolerance for numbers the book prints as rough approximations.

    Returns:
      One `Record` per printed number; elements of a vector get an index suffix `[i]`.
    """
    printed = _as_printed_list(book_value)
    computed = _as_float_list(computed_value)
    if len(printed) != len(computed):
        raise ValueError(
            f"{section} {quantity}: {len(printed)} printed numbers but {len(computed)} computed"
        )
    records = []
    for index, (text, value) in enumerate(zip(printed, computed, strict=True)):
        book = float(text)
        matches = math.isfinite(value) and abs(value - book) <= _tolerance(text, book, rel_tol)
        if not matches and not why:
            raise ValueError(
                f"{section} {quantity}: book {text} vs computed {value:.6g} differ; "
                "pass why= to explain the erratum"
            )
        name = quantity if len(printed) == 1 else f"{quantity}[{index}]"
        records.append(
            Record(
                section=section,
                quantity=name,
                book_value=book,
                computed_value=value,
                status="match" if matches else "erratum",
                note=note if matches else why,
            )
        )
    return records


def ambiguous(
    section: str, quantity: str, book_value: Any, computed_value: Any, note: str
) -> list[Record]:
    """A printed number whose meaning depends on a convention the book leaves open."""
    return [Record(section, quantity, book_value, computed_value, "ambiguous", note)]


def claim(
    section: str,
    quantity: str,
    book_claim: str,
    computed_fact: str,
    holds: bool,
    *,
    note: str = "",
    why: str = "",
) -> list[Record]:
    """A printed statement that is not a number (a shape, a bound, "x underflows"), checked by code.

    Args:
      book_claim: the statement as the book makes it, e.g. "1e-5 underflows to 0 in fp16".
      computed_fact: what our computation shows, e.g. "fp16(1e-5) = 1.0014e-05 (subnormal)".
      holds: whether the book's statement is true, decided by the caller's computation (never a
        literal), e.g. `bool(np.float16(1e-5) == 0)`.
      why: required when the statement does not hold: the correct statement and the cause.
    """
    if not holds and not why:
        raise ValueError(f"{section} {quantity}: the claim fails; pass why= to explain it")
    status: Status = "match" if holds else "erratum"
    return [Record(section, quantity, book_claim, computed_fact, status, note if holds else why)]
