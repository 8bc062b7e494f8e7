import argparse

import pytest

from utils.cli import parse_args, parse_size, parse_speakers, str2bool


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
