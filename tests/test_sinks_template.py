"""The serial template format: rendering and the checks `crowdsign check` runs."""

from __future__ import annotations

import pytest

from crowdsign.config import ConfigError, parse_config
from crowdsign.sinks.base import Update
from crowdsign.sinks.template import TemplateError, check_template, render_template, whole_people

FRESH = Update(t=5.0, frame=9, total=14.6, zones={"A": 12.4, "B": 2.5},
               levels={"A": "high", "B": "low"}, fps=10.0, infer_ms=30.0)
STALE = Update(t=5.0, frame=9, total=None, zones={"A": None, "B": None},
               levels={"A": "unknown", "B": "unknown"}, fps=0.0, infer_ms=0.0)


def test_default_template_lists_zones_as_whole_people():
    assert render_template("{zones}\r\n", FRESH) == "A=12;B=3\r\n"


def test_levels_and_single_zone_fields():
    assert render_template("{levels}|{count[B]}|{level[A]}|{total}", FRESH) \
        == "A=high;B=low|3|high|15"


def test_counts_round_half_up_to_whole_people():
    assert [whole_people(x) for x in (0.0, 0.4, 0.5, 1.5, 2.5, 12.49)] == [0, 0, 1, 2, 3, 12]


def test_decimal_format_spec_shows_the_smoothed_value():
    assert render_template("{total:.1f} {count[A]:5.2f}", FRESH) == "14.6 12.40"


def test_stale_counts_print_as_dashes_keeping_the_column_width():
    template = "[{count[A]:>4}][{count[B]:03d}][{total:.1f}][{zones}][{level[A]:.1}]"
    assert render_template(template, FRESH) == "[  12][003][14.6][A=12;B=3][h]"
    assert render_template(template, STALE) == "[  --][ --][--][A=--;B=--][u]"


def test_fill_and_alignment_apply_to_dashes_too():
    assert render_template("{total:*<5}|{total:^6}", STALE) == "--***|  --  "


def test_literal_text_and_escaped_braces_pass_through():
    assert render_template("{{A}} people: {count[A]}", FRESH) == "{A} people: 12"


def test_numeric_zone_names_are_looked_up_as_names():
    u = Update(t=0, frame=0, total=3, zones={"1": 3.0}, levels={"1": "low"}, fps=0, infer_ms=0)
    assert render_template("{count[1]}/{level[1]}", u) == "3/low"
    assert check_template("{count[1]}", ["1"]) is None


def test_check_accepts_a_good_template():
    assert check_template("{zones};{levels};{total:>3};{count[A]:.1f};{level[B]:<6}\r\n",
                          ["A", "B"]) is None


@pytest.mark.parametrize("template, reason", [
    ("{people}", "unknown field {people}"),
    ("{count}", "unknown field {count}"),
    ("{count[C]}", "unknown zone 'C' in {count[C]} (zones: A, B)"),
    ("{level[c]}", "unknown zone 'c'"),
    ("{count.real}", "unknown field {count.real}"),
    ("{}", "positional field"),
    ("{0}", "positional field"),
    ("{total!r}", "conversion !r is not supported"),
    ("{total:s}", "bad format spec 's'"),
    ("{total:{w}}", "unknown field {w}"),
    ("{zones:d}", "bad format spec 'd'"),
    ("A=} ", "not a valid format string"),
    ("{total", "not a valid format string"),
])
def test_check_names_the_problem_in_one_line(template, reason):
    problem = check_template(template, ["A", "B"])
    assert problem is not None and reason in problem
    assert "\n" not in problem


def test_render_raises_template_error_for_an_unknown_zone():
    with pytest.raises(TemplateError, match="unknown zone 'Z'"):
        render_template("{count[Z]}", FRESH)


def test_config_validation_reports_a_bad_template_with_its_key(tmp_path):
    raw = {"zones": [{"name": "A", "polygon": [[0, 0], [1, 0], [1, 1]]}],
           "outputs": [{"type": "serial", "port": "loop://", "template": "{count[B]}"}]}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, tmp_path / "crowdsign.toml")
    assert any("[[outputs]] #1.template: unknown zone 'B'" in p for p in err.value.problems)
