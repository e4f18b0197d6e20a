"""Math word problems: numbers read from free text, compared exactly as fractions."""

from fractions import Fraction

import pytest

from qcoder_lib.evaluation.math import (
    extract_answer,
    math_benchmark,
    math_tasks,
    parse_number,
    reference_answer,
    score_math,
)


@pytest.mark.parametrize("text, value", [
    ("1,234", Fraction(1234)), ("-7", Fraction(-7)), ("22.1", Fraction(221, 10)),
    ("9/2", Fraction(9, 2)), ("$4.50", Fraction(9, 2)), ("25%", Fraction(25)), ("abc", None),
    ("1/0", None),
])
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_extract_answer():
    assert extract_answer("3 boxes of 4 is 12, minus 2 gives 10.") == 10
    assert extract_answer("so #### 72 and then 5") == 72
    assert extract_answer("no number here") is None
    assert extract_answer("the answer is 0.333") != Fraction(1, 3)


def test_reference_answer_formats():
    assert reference_answer({"answer": "It is 3 + 4 = 7\n#### 7"}) == "7"
    assert reference_answer({"answer": "9/2"}) == "9/2"
    with pytest.raises(ValueError, match="is not a number"):
        math_tasks([{"question": "q", "answer": "seven"}])


def test_oracle_and_failures():
    b = math_benchmark()
    assert len(b.tasks) == 20
    assert all(r.passed for r in score_math(b.tasks, b.references()))
    t = next(x for x in b.tasks if x.check["answer"] == "9/2")
    res = score_math([t], [[" It is 4.5 cups.", " 4.49", " lots", " 9 / 2"]])
    assert [r.outcome for r in res] == ["passed", "wrong_answer", "no_answer", "passed"]
