"""Shared command-line plumbing: flag parsing with config overrides, and errors for people.

A user error (bad config key, mesh, data, checkpoint, workdir) ends with one sentence on stderr
and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from mmjax import config as config_lib
from mmjax.core.checkpointing import CheckpointMismatchError
from mmjax.core.params_io import ExportError
from mmjax.core.partitioning import MeshError
from mmjax.data.errors import DataError
from mmjax.evaluate.errors import EvalError
from mmjax.train.faults import TrainingStopped
from mmjax.train.loop import PreflightError


def user_errors() -> tuple[type[BaseException], ...]:
  return (config_lib.ConfigError, MeshError, PreflightError, DataError,
          CheckpointMismatchError, TrainingStopped, EvalError, ExportError, FileNotFoundError, PermissionError)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None):
  """Parses `argv`; returns (args, overrides) where overrides are `--config.k=v` pairs."""
  argv = list(sys.argv[1:] if argv is None else argv)
  rest, overrides = config_lib.split_override_flags(argv)
  return parser.parse_args(rest), overrides


def run(main: Callable[[], int | None]) -> int:
  """Calls `main`, turning user errors into one sentence and exit code 2."""
  # force: importing the library may already have configured the root logger (absl warns at
  # import time), which would make this a no-op and hide INFO lines such as 'resumed from'.
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s',
                      force=True)
  for noisy in ('absl', 'jax._src', 'orbax', 'tensorflow_datasets'):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  try:
    return int(main() or 0)
  except user_errors() as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
