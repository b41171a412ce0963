import re

import pandas as pd

from poisonlib import report
from poisonlib.tables import VERDICT_COLOURS, PaperTable, paper_table, split_column, two_level


def _frame():
    one = pd.DataFrame({"eps_d": ["0.03", "0.1"], "paper drop (%)": ["-1.50", "-3.00"], "our drop (%)": ["-1.40", "+0.20"],
                        "verdict": [report.verdict(-1.4, -1.5), report.verdict(0.2, -3.0)]})
    two = one.assign(**{"our drop (%)": ["-6.00", "-2.00"], "verdict": [report.verdict(-6.0, -1.5), report.verdict(-2.0, -3.0)]})
    return report.by_protocol(lambda f: f, {"paper": one, "released": two})


def test_columns_get_quantity_over_whose_number():
    assert split_column("our drop (%) [released]") == ("drop (%)", "ours: released")
    assert split_column("paper drop (%)") == ("drop (%)", "reported")
    assert split_column("verdict [paper]") == ("verdict", "ours: paper")
    assert split_column("ours [paper]") == ("value", "ours: paper") and split_column("paper") == ("value", "reported")
    assert split_column("eps_d") == ("eps_d", "")
    header, order = two_level(["eps_d", "our drop (%) [paper]", "paper drop (%)", "our drop (%) [released]"])
    assert list(header) == [("eps_d", ""), ("drop (%)", "reported"), ("drop (%)", "ours: paper"), ("drop (%)", "ours: released")]
    assert order == [0, 2, 1, 3]


def test_paper_table_html_pairs_numbers_colours_verdicts_and_is_deterministic():
    df = _frame()
    t = paper_table(df, "Table 2, MNIST LR")
    html = t._repr_html_()
    assert isinstance(t, PaperTable) and html == paper_table(df, "Table 2, MNIST LR")._repr_html_()
    assert "<caption>Table 2, MNIST LR</caption>" in html and 'colspan="3">drop (%)' in html
    # verdicts: row 0 paper reproduced, released qualitatively; row 1 paper not reproduced, released reproduced
    styled = re.findall(r'<td id="T_\w+_row\d+_col\d+" [^>]*>([^<]+)</td>', html)  # cells with a style of their own
    assert sorted(styled) == ["not reproduced", "qualitatively", "reproduced", "reproduced"]
    assert all(c in html for c in VERDICT_COLOURS.values())
    # the same table text gives the same id; another table another one
    other = paper_table(df.iloc[:1], "Table 2, MNIST LR")._repr_html_()
    assert t.uuid != paper_table(df.iloc[:1], "Table 2, MNIST LR").uuid and "T_" + t.uuid not in other


def test_paper_table_prints_as_plain_text():
    df = _frame()
    t = paper_table(df, "cap")
    assert repr(t) == "cap\n" + df.to_string(index=False)
    from IPython.lib.pretty import pretty

    assert pretty(t) == repr(t)


def test_a_frame_with_nothing_to_pair_keeps_one_header_row_and_its_names():
    html = paper_table(pd.DataFrame([[1, "reproduced"]], columns=["x", "verdict"]), "c")._repr_html_()
    assert html.count("<tr>") == 2 and VERDICT_COLOURS["reproduced"] in html  # one header row, one data row
    clash = paper_table(pd.DataFrame([[1, 2]], columns=["paper x", "paper: x"]))._repr_html_()  # both would be (x, reported)
    assert ">paper x</th>" in clash and ">paper: x</th>" in clash
