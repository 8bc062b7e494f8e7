import argparse

import pytest

from utils.runtime.cli import (
    bounded,
    non_negative_float,
    non_negative_int,
    parse_args,
    parse_size,
    parse_speakers,
    positive_float,
    positive_int,
    probability,
    str2bool,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_path")
    parser.add_argument("--batch_size", type=int, default=64)
    return parser


def test_both_spellings_are_accepted():
    args = parse_args(_parser(), ["model_path=checkpoint/last", "--batch_size=8"])
    assert args.model_path == "checkpoint/last" and args.batch_size == 8
    args = parse_args(_parser(), ["--model_path=x", "batch_size=3"])
    assert args.model_path == "x" and args.batch_size == 3


def test_unknown_bare_key_is_an_error():
    with pytest.raises(SystemExit):
        parse_args(_parser(), ["epochs=3"])


def test_value_types():
    assert parse_size("128x64") == (128, 64)
    assert parse_speakers("1-3,7,s9") == [1, 2, 3, 7, 9]
    assert str2bool("false") is False and str2bool("1") is True
    for bad in ("10", "0x5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_speakers("3-1")


def test_abbreviations_are_refused():
    parser = _parser()
    parser.add_argument("--epochs", type=int, default=1)
    with pytest.raises(SystemExit):
        parse_args(parser, ["--epoch=1"])
    with pytest.raises(SystemExit):
        parse_args(parser, ["--batch=4"])
    assert parse_args(parser, ["epochs=2"]).epochs == 2


@pytest.mark.parametrize(("kind", "good", "bad"), [
    (positive_int, {"1": 1, "64": 64}, ["0", "-3", "1.5", "ten", ""]),
    (non_negative_int, {"0": 0, "4": 4}, ["-1", "x"]),
    (positive_float, {"1e-4": 1e-4, "3": 3.0}, ["0", "-1", "nan", "inf", "x"]),
    (non_negative_float, {"0": 0.0, "0.5": 0.5}, ["-0.1", "nan"]),
    (probability, {"0": 0.0, "1": 1.0, "0.25": 0.25}, ["1.01", "-0.5", "nan"]),
])
def test_range_checked_types(kind, good, bad):
    for text, value in good.items():
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            kind(text)


def test_a_bounded_option_names_itself_and_its_range(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--val_interval", type=bounded(int, 1, 10))
    with pytest.raises(SystemExit):
        parse_args(parser, ["val_interval=0"])
    assert "--val_interval: expected an integer from 1 to 10, got '0'" in capsys.readouterr().err
