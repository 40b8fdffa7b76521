"""Shared command-line plumbing: flag parsing with config overrides, and errors for people.

A user error (bad config key, mesh, data, checkpoint, workdir) ends with one sentence on stderr
and exit code 2; checkpoints that cannot be restored (storage trouble, all kept in place) with one
sentence and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from mmjax import config as config_lib


def user_errors() -> tuple[type[BaseException], ...]:
  from mmjax.data.errors import DataError
  from mmjax.evaluate.errors import EvalError
  from mmjax.export.errors import ExportError
  from mmjax.train.checkpointing import CheckpointMismatchError
  from mmjax.train.faults import TrainingStopped
  from mmjax.train.loop import PreflightError
  from mmjax.train.partitioning import MeshError
  return (config_lib.ConfigError, MeshError, PreflightError, DataError,
          CheckpointMismatchError, TrainingStopped, EvalError, ExportError, FileNotFoundError, PermissionError)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None):
  """Parses `argv`; returns (args, overrides) where overrides are `--config.k=v` pairs."""
  argv = list(sys.argv[1:] if argv is None else argv)
  rest, overrides = config_lib.split_override_flags(argv)
  return parser.parse_args(rest), overrides


def run(main: Callable[[], int | None]) -> int:
  """Calls `main`, turning user errors into one sentence and exit code 2."""
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
  for noisy in ('absl', 'jax._src', 'orbax', 'tensorflow_datasets'):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  from mmjax.train.checkpointing import RestoreFailed
  try:
    return int(main() or 0)
  except user_errors() as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except RestoreFailed as e:  # not bad input: storage trouble, with every checkpoint kept
    print(f'error: {e}', file=sys.stderr)
    return 1
