"""--threads: every subcommand takes it (default 1), refuses nonsense, and sets torch's threads."""

import argparse

import pytest
import torch

from pyrogen.cli.common import DEFAULT_THREADS, add_common_arguments, apply_threads


def _parser():
    parser = argparse.ArgumentParser()
    add_common_arguments(parser, "digits")
    return parser


def test_threads_default_to_one_and_are_applied():
    before = torch.get_num_threads()
    try:
        args = _parser().parse_args([])
        assert args.threads == DEFAULT_THREADS == 1
        assert apply_threads(_parser().parse_args(["--threads", "2"])) == 2
        assert torch.get_num_threads() == 2
        assert apply_threads(args) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_threads_refuse_what_is_not_a_positive_integer(value, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--threads", value])
    assert "--threads" in capsys.readouterr().err
