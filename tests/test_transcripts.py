"""The transcript comparison: strict on what is deterministic, tolerant of rounding noise."""

from __future__ import annotations

from tests.transcripts import differences, json_differences

VERDICTS = """\
✓ torch.autograd.functional (cpu float64, torch 2.13.0+cpu): 12 entries agree, max error
0
✓ finite differences (5-point central): 12 entries agree, max error 4e-13
· SymPy, evaluated exactly: skipped (--no-symbolic)
"""

TABLE = """\
┏━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━┓
┃ partial ┃ engine        ┃ finite diff. ┃ agree ┃
┡━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━┩
│ ∂f/∂x   │ -0.1966119332… │ -0.1966119332… │   ✓   │
│ ∂f/∂y   │             4 │            4 │   ✓   │
└─────────┴───────────────┴──────────────┴───────┘
"""


def test_identical_text_matches():
    assert differences(VERDICTS, VERDICTS) == []
    assert differences(TABLE, TABLE) == []


def test_an_error_figure_within_its_tolerance_matches():
    # The figure that failed on another processor: 3.6e-13 where the README shows 4e-13.
    assert differences(VERDICTS, VERDICTS.replace("4e-13", "3.6e-13")) == []
    # torch's 0 may be a rounding error elsewhere, and move the line break.
    moved = VERDICTS.replace("max error\n0", "max error 4.4e-16")
    assert differences(VERDICTS, moved) == []


def test_an_error_figure_beyond_its_tolerance_does_not():
    assert differences(VERDICTS, VERDICTS.replace("4e-13", "3e-05"))
    assert differences(VERDICTS, VERDICTS.replace("max error\n0", "max error 2e-06"))


def test_words_and_verdicts_are_compared_exactly():
    assert differences(VERDICTS, VERDICTS.replace("12 entries agree", "12 entries disagree"))
    assert differences(VERDICTS, VERDICTS.replace("✓ finite", "✗ finite"))
    assert differences(VERDICTS, VERDICTS.replace("12 entries", "11 entries"))
    assert differences(VERDICTS, VERDICTS.replace("skipped", "skiped"))


def test_values_are_compared_to_their_last_digits():
    line = "value 0.7310585786300049  at x = 1"
    assert differences(line, line.replace("0.7310585786300049", "0.731058578630005")) == []
    assert differences(line, line.replace("0.7310585786300049", "0.7310585786301049"))
    assert differences(line, line.replace("0.7310585786300049", "0.7310585786"))
    assert differences("value -12", "value -13")
    assert differences("value -12", "value 12")


def test_shortened_numbers_may_move_by_one_in_their_last_digit():
    assert differences(TABLE, TABLE.replace("│ -0.1966119332… │ -", "│ -0.1966119333… │ -")) == []
    assert differences(TABLE, TABLE.replace("│ -0.1966119332… │ -", "│ -0.1966119352… │ -"))


def test_a_wider_cell_still_matches_but_a_missing_row_does_not():
    wider = TABLE.replace("            4 │   ✓", " 4.000000001… │   ✓")
    assert differences(TABLE, wider) == []
    rows = TABLE.splitlines()
    assert differences(TABLE, "\n".join(rows[:4] + rows[5:]))
    assert differences(TABLE, TABLE + "extra line\n")


def test_finite_difference_estimates_are_compared_within_their_tolerance():
    near = TABLE.replace("│ -0.1966119332… │   ✓", "│ -0.1966119339… │   ✓")
    assert differences(TABLE, near) == []
    # the same change in the engine column is a real difference
    engine = TABLE.replace("│ -0.1966119332… │ -", "│ -0.1966119339… │ -")
    assert differences(TABLE, engine)
    far = TABLE.replace("│ -0.1966119332… │   ✓", "│ -0.1966 │   ✓")
    assert differences(TABLE, far)


WORST = """\
worst point: b = 0.3156690631…, w = -2.927120843…, x = 2.210586927…: ∂/∂w engine
0.004682849119… vs finite differences 0.004682849118…
✓ every comparison agrees at 200 points
"""


def test_the_worst_point_may_be_another_point_of_the_same_form():
    other = WORST.replace("b = 0.3156690631…", "b = -1.5").replace("∂/∂w", "∂/∂b")
    assert differences(WORST, other) == []
    broken = WORST.replace("0.004682849118…", "0.005")
    assert differences(WORST, broken)
    assert differences(WORST, WORST.replace("worst point", "worse point"))
    assert differences(WORST, WORST.replace("every comparison agrees", "1 disagreement"))


def test_json_documents():
    shown = {
        "value": -12.0,
        "partials": [{"engine": -4.0, "finite_difference": -4.0, "fd_error_estimate": 9e-13}],
        "checks": {"torch": {"ok": True, "max_error": 0.0, "rtol": 1e-7, "atol": 1e-9}},
    }
    noisy = {
        "value": -12.0,
        "partials": [
            {"engine": -4.0, "finite_difference": -4.000000000001, "fd_error_estimate": 3e-13}
        ],
        "checks": {"torch": {"ok": True, "max_error": 4e-16, "rtol": 1e-7, "atol": 1e-9}},
    }
    assert json_differences(shown, shown) == []
    assert json_differences(shown, noisy) == []
    wrong = {**noisy, "value": -12.5}
    assert json_differences(shown, wrong)
    renamed = {"val": -12.0, **{k: v for k, v in noisy.items() if k != "value"}}
    assert json_differences(shown, renamed)
    failing = {**noisy, "checks": {"torch": {**noisy["checks"]["torch"], "ok": False}}}
    assert json_differences(shown, failing)
    big_error = {**noisy, "checks": {"torch": {**noisy["checks"]["torch"], "max_error": 1.0}}}
    assert json_differences(shown, big_error)
