"""The report's comparison rule: status derived from printed precision, errata explained."""

import pytest

from experiments.book import records


def test_match_within_one_unit_of_last_printed_digit():
    [record] = records.check("6.4.4", "y_hat", "0.6748", 0.674805)
    assert record.status == "match"
    assert record.book_value == pytest.approx(0.6748)


def test_difference_beyond_last_digit_is_an_erratum_with_its_explanation():
    [record] = records.check("6.4.5", "L1", "1.1223", 1.12333, why="ln(1/0.3252) = 1.1233")
    assert record.status == "erratum"
    assert record.note == "ln(1/0.3252) = 1.1233"


def test_unexplained_erratum_is_refused():
    with pytest.raises(ValueError, match="pass why="):
        records.check("6.4.5", "L1", "1.1223", 1.12333)


def test_integers_must_match_exactly_and_vectors_give_one_record_per_number():
    shape = records.check("17.23", "H_input shape", ["8", "128", "512"], [8, 120, 512], why="x")
    assert [r.status for r in shape] == ["match", "erratum", "match"]
    assert [r.quantity for r in shape] == [f"H_input shape[{i}]" for i in range(3)]


def test_scientific_notation_precision_and_relative_tolerance():
    assert records.check("11", "fp16 min", "6e-5", 6.1035e-5)[0].status == "match"
    [rough] = records.check("15.7.2", "1.1^100", "14000", 13780.6, rel_tol=0.05)
    assert rough.status == "match"


def test_claim_status_follows_the_computed_truth():
    [ok] = records.claim("x", "q", "claim", "fact", holds=True)
    assert ok.status == "match"
    with pytest.raises(ValueError, match="pass why="):
        records.claim("x", "q", "claim", "fact", holds=False)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 printed numbers but 3 computed"):
        records.check("x", "q", ["1", "2"], [1, 2, 3])
