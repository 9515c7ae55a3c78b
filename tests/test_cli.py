"""The command line explains itself: --version, an example and the defaults in every --help, the
explanation methods listed by `explain --help`; long work reports progress as plain lines in a log."""

import argparse
import re
import subprocess
import sys

import pytest

from deepfake_xai import __version__
from deepfake_xai.cli import build_parser
from deepfake_xai.explain.catalog import names as method_names
from deepfake_xai.progress import Lines


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version():
    out = subprocess.run([sys.executable, "-m", "deepfake_xai", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"deepfake-xai {__version__}"


def test_every_command_shows_an_example_and_its_defaults():
    subs = _subparsers()
    assert len(subs) >= 18
    for name, sub in subs.items():
        text = sub.format_help()
        assert "example:\n  deepfake-xai " + name in text, name
        for action in sub._actions:
            if action.default not in (None, [], (), False, argparse.SUPPRESS) and action.option_strings:
                assert "default" in (action.help or ""), (name, action.option_strings)


def test_the_top_help_is_short():
    usage = build_parser().format_usage()
    assert "COMMAND" in usage and len(usage) < 120


def test_explain_lists_the_methods_and_refuses_an_unknown_one():
    text = _subparsers()["explain"].format_help().replace("\n", " ")
    text = " ".join(text.split())
    for m in method_names():
        assert m in text, m
    bad = subprocess.run([sys.executable, "-m", "deepfake_xai", "explain", "x.png", "--weights", "w",
                          "--method", "gradcamm"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'gradcamm'" in bad.stderr


def test_progress_in_a_log_is_a_plain_line_every_tenth(capsys):
    for _ in Lines(range(200), desc="predict presocial", unit="batch"):
        pass
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 10
    assert lines[0].startswith("predict presocial: 10% (20/200 batch,") and lines[-1].startswith(
        "predict presocial: 100% (200/200 batch,")
    with Lines(total=None, desc="download", unit="B") as bar:  # unknown total: one line at the end
        bar.update(1234)
    assert capsys.readouterr().err.startswith("download: (1234 B,")
    bar = Lines(total=4, desc="explanation quality", unit="part", step=25)
    bar.set_postfix(now="faithfulness")
    bar.refresh()  # a line before the first (long) part ends
    assert re.fullmatch(r"explanation quality: 0% \(0/4 part, \d+\.\d s\); now faithfulness\n", capsys.readouterr().err)


@pytest.mark.parametrize("forced", ["lines", "bar"])
def test_a_job_log_gets_lines_and_a_terminal_a_bar(tmp_path, forced):
    """The synth command's progress written to a log file: plain lines by default off a terminal; tqdm's
    redraws only when asked for (DFX_PROGRESS=bar)."""
    import os

    log = tmp_path / "synth.log"
    env = {**os.environ, "DFX_PROGRESS": forced} if forced == "bar" else dict(os.environ)
    with open(log, "w") as fh:
        subprocess.run([sys.executable, "-m", "deepfake_xai", "synth", "--out", str(tmp_path / "d"), "--real", "6",
                        "--image-size", "32"], stderr=fh, stdout=subprocess.DEVNULL, check=True, env=env)
    raw = log.read_bytes()  # (read_text would turn carriage returns into newlines)
    if forced == "lines":
        assert b"\r" not in raw and b"synthesize: 100%" in raw
    else:
        assert b"\r" in raw


def test_progress_off_means_off(tmp_path, capsys):
    """progress=False silences the bar (the module's function once shadowed callers' own `progress` flag)."""
    from deepfake_xai.data.synth import SynthConfig, generate

    generate(tmp_path / "d", SynthConfig(real=4, image_size=32), progress=False)
    assert "synthesize" not in capsys.readouterr().err
