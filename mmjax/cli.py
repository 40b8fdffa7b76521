"""Shared command-line plumbing: flag parsing with config overrides, and errors for people.

Exit codes by meaning (mmjax/errors.py): a user error (bad config key, mesh, data, checkpoint,
a workdir in use; any `UserError`) ends with one sentence on stderr and exit code 2, which
launchers do not restart; a storage fault during a run (`StorageError`, checkpoints that cannot
be restored, any `OSError` that reaches here: permission, missing file, full disk, I/O) with one
sentence naming the path and errno and exit code 1, which launchers restart (the run resumes);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import Callable, Sequence

from mmjax import config as config_lib
from mmjax import errors, jax_flags, log_filters


def user_errors() -> tuple[type[BaseException], ...]:
  """Bad input (exit code 2): every stage's one-sentence error derives from `UserError`."""
  return (errors.UserError,)


def storage_errors() -> tuple[type[BaseException], ...]:
  """Restartable failures of the storage (exit code 1): `StorageError` and its kinds."""
  return (errors.StorageError,)


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
  except storage_errors() as e:  # not bad input: storage trouble, with every checkpoint kept
    print(f'error: {e}', file=sys.stderr)
    return _end_now(1)
  except OSError as e:  # a storage fault no stage turned into a sentence: still restartable
    print(f'error: {errors.storage_error("running", e)}', file=sys.stderr)
    return _end_now(1)


def _end_now(code: int) -> int:
  """Returns `code`, or, when worker threads are still running (orbax's background writers of
  a failed save wait up to 300 s for signals that never come), flushes and ends the process at
  once: the sentence is printed and every committed checkpoint is in place."""
  if any(t.is_alive() and not t.daemon and _orbax_writer(t) for t in threading.enumerate()):
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
  return code


def _orbax_writer(thread: threading.Thread) -> bool:
  """A background thread of an orbax save (its commit thread or a signal waiter)."""
  target = getattr(thread, '_target', None)
  return (type(thread).__module__.startswith('orbax') or thread.name == 'async_save'
          or getattr(target, '__module__', '').startswith('orbax'))
