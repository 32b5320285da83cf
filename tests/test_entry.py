"""data.entry.parse: a flag that takes a value is refused when given twice, however it is spelled; a flag of its own
name is never read as an abbreviation of a longer one."""

import pytest

from data.entry import parse
from study.cli import get_args_parser


@pytest.mark.parametrize("argv, verbose", [
    (["-v", "report", "x"], True), (["report", "-v", "x"], True), (["report", "x", "--verbose"], True),
    (["report", "x"], False), (["-v", "trial", "--demo", "-v"], True), (["launch", "-v"], True),
])
def test_verbose_is_taken_before_or_after_the_command(argv, verbose):
    assert parse(get_args_parser(), argv).verbose is verbose


def test_a_flag_named_in_full_is_itself_not_an_abbreviation_of_a_longer_one():
    args = parse(get_args_parser(), ["trial", "--demo", "--demo-rows", "500", "--epochs", "1"])
    assert args.demo and args.demo_rows == 500
    args = parse(get_args_parser(), ["launch", "--demo-rows", "500", "--demo"])
    assert args.demo and args.demo_rows == 500


@pytest.mark.parametrize("argv, flag, values", [
    (["trial", "--epochs", "40", "--epochs=4"], "--epochs", "40, then 4"),
    (["trial", "--demo-r", "500", "--demo", "--demo-rows", "600"], "--demo-rows", "500, then 600"),
    (["launch", "--max-ep", "mi=3", "--max-epochs", "mi=4"], "--max-epochs", "mi=3, then mi=4"),
])
def test_a_value_given_twice_is_refused_naming_the_flag_and_both_values(argv, flag, values, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(get_args_parser(), argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"error: argument {flag}: given twice ({values}); give it once")
