"""Shared command-line plumbing: flag parsing with config overrides, and errors for people.

A user error (bad config key, mesh, data, checkpoint, workdir) ends with one sentence on stderr
and exit code 2; checkpoints that cannot be restored (storage trouble, all kept in place) with one
sentence and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from mmjax import config as config_lib
from mmjax import jax_flags, log_filters
from mmjax.core.checkpointing import CheckpointMismatchError, RestoreFailed
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
  """Parses `argv`, applying `--jax_*` options (mmjax.jax_flags); returns (args, overrides) where
  overrides are `--config.k=v` pairs."""
  argv = list(sys.argv[1:] if argv is None else argv)
  rest, jax_options = jax_flags.split_jax_flags(argv)
  rest, overrides = config_lib.split_override_flags(rest)
  if parser.epilog is None:
    parser.epilog = ('Also accepted: --config.KEY=VALUE overrides, and JAX options such as '
                     '--jax_debug_nans, --jax_log_compiles or --jax_disable_jit.')
  args = parser.parse_args(rest)
  jax_flags.apply_jax_flags(jax_options)
  return args, overrides


def run(main: Callable[[], int | None]) -> int:
  """Calls `main`, turning user errors into one sentence and exit code 2."""
  log_filters.install()
  try:
    return int(main() or 0)
  except user_errors() as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except RestoreFailed as e:  # not bad input: storage trouble, with every checkpoint kept
    print(f'error: {e}', file=sys.stderr)
    return 1
