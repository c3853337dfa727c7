"""The transcript comparison: strict on what is deterministic, tolerant of rounding noise."""

from __future__ import annotations

import os

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


# ---- found by review: what must not slip through, and what must not fail ---------------

CHECK_TABLE = """\
200 random points in [-3, 3] (seed 0)
┏━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━┓
┃ check                    ┃ compared ┃ agree ┃ max error ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━┩
│ torch autograd           │      600 │   600 │   4.7e-16 │
│ finite differences       │      600 │   600 │   6.4e-12 │
└──────────────────────────┴──────────┴───────┴───────────┘
"""


def test_counts_do_not_widen_the_tolerance_of_an_error_figure():
    assert differences(CHECK_TABLE, CHECK_TABLE.replace("4.7e-16", "4.4e-16")) == []
    assert differences(CHECK_TABLE, CHECK_TABLE.replace("4.7e-16", "5.0e-05"))
    assert differences(CHECK_TABLE, CHECK_TABLE.replace("6.4e-12", "5.9e-04"))


def test_first_derivative_estimates_have_the_first_derivative_tolerance():
    assert differences(TABLE, TABLE.replace("            4 │   ✓", "      4.00003 │   ✓"))


def test_the_worst_point_names_the_same_variables():
    assert differences(WORST, WORST.replace("∂/∂w", "∂/∂q"))
    assert differences(WORST, WORST.replace("w = -2.927120843…", "v = -2.927120843…"))
    assert differences(WORST, WORST.replace("w = -2.927120843…, ", ""))
    assert differences(WORST, WORST.replace("0.004682849118…", "nan"))


def test_indentation_and_alignment_are_compared():
    tree = "* f  -12\n├── + [t1]  3\n│   ├── x  -2\n│   └── y  5\n└── z  -4\n"
    assert differences(tree, tree.replace("│   ├── x", "├── x"))
    listing = "where t1 = x*w  (2)\n      t2 = x*w - y  (-2)\n"
    assert differences(listing, listing.replace("      t2", "  t2"))
    assert differences(TABLE, TABLE.replace("│             4 │", "│ 4             │"))


def test_a_number_written_another_way_is_a_difference():
    assert differences("x,y,value\n-2,5,-12\n", "x,y,value\n-2.0,5.0,-12.0\n")
    assert differences("value -12", "value -1.2e1")
    assert json_differences({"x": 4.0}, {"x": 4})


def test_the_torch_build_is_not_compared():
    line = "✓ torch.autograd.functional (cpu float64, torch 2.13.0+cpu): 3 entries agree"
    assert differences(line, line.replace("2.13.0+cpu", "2.13.0")) == []
    assert differences(line, line.replace("2.13.0+cpu", "2.13.0+cu121")) == []
    assert differences(line, line.replace("cpu float64", "cuda float64"))


def _rich_table(fd: str) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Partial derivatives of f", title_justify="left")
    for name in ("partial", "engine", "finite diff.", "agree"):
        table.add_column(name, justify="left" if name == "partial" else "right")
    table.add_row("∂f/∂x", "10", fd, "✓")
    console = Console(width=88, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


def test_a_wider_column_from_a_longer_estimate_still_matches():
    narrow, wide = _rich_table("10"), _rich_table("10.00000000…")
    assert narrow != wide
    assert differences(narrow, wide) == []
    assert differences(narrow, _rich_table("10.00010000…"))
