"""--config FILE.yaml and --override "key=value|key=value" on main.py's command line."""
from __future__ import annotations

from pathlib import Path

import pytest

import main
from utils.runtime.cli import parse_args

REPO = Path(__file__).resolve().parents[2]


def _parse(*argv: str):
    return parse_args(main.build_parser(), list(argv))


def test_reference_config_gives_the_recipe():
    args = _parse("--config", str(REPO / "asset/configs/lrw_resnet18_mstcn.yaml"))
    assert args.task == "words" and args.relu_type == "swish" and args.tcn_kernel_size == [3, 5, 7]
    assert args.tcn_num_layers == 4 and args.tcn_dropout == 0.2 and args.tcn_dwpw is False
    assert args.optimizer == "adamw" and args.lr == pytest.approx(3e-4) and args.lr_schedule == "cosine"
    assert args.mixup_alpha == pytest.approx(0.4) and args.batch_size == 32


def test_flags_then_overrides_win_over_the_file(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("task: words\nbatch_size: 32\nepochs: 80\nlr: 3.0e-4\ntcn_kernel_size: [3, 5]\n")
    args = _parse(f"config={config}", "batch_size=8", "--override", "epochs=2|lr=0.01|tcn_kernel_size=3,5,7")
    assert (args.batch_size, args.epochs, args.lr, args.tcn_kernel_size) == (8, 2, 0.01, [3, 5, 7])
    # An override beats a flag given after it; several --override options apply in order.
    args = _parse(f"--config={config}", "--override=batch_size=4", "batch_size=16", "--override", "epochs=5")
    assert (args.batch_size, args.epochs) == (4, 5)
    assert _parse(f"--config={config}").tcn_kernel_size == [3, 5]


@pytest.mark.parametrize("text,message", [
    ("task: words\nbogus: 1\n", "unknown option 'bogus'"),
    ("[1, 2]\n", "expected a mapping"),
    ("task: [unclosed\n", "not valid YAML"),
    ("task: poems\n", "invalid choice"),
])
def test_bad_config_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture, text: str, message: str):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SystemExit) as exc:
        _parse(f"config={config}")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if message != "invalid choice":
        assert str(config) in err


@pytest.mark.parametrize("override,message", [("epochs", "expected key=value"), ("nope=1", "unknown option 'nope'"),
                                              ("epochs=many", "expected an integer of at least 1")])
def test_bad_overrides(capsys: pytest.CaptureFixture, override: str, message: str):
    with pytest.raises(SystemExit):
        _parse("--override", override)
    assert message in capsys.readouterr().err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit):
        _parse(f"config={tmp_path / 'none.yaml'}")
    assert "none.yaml: cannot be read" in capsys.readouterr().err
