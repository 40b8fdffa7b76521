"""Start-up logging for the command-line tools: one format, and known noise filtered out.

Dropped are only warnings that are known to be harmless and that every run would otherwise
print: orbax re-registering its `jax.Array` type handler at import, orbax telling that a
checkpoint manager opened read-only (for evaluation or export) disables saving, TFDS telling
that a dataset being built has no dataset_info.json yet, and tensorboardX renaming a tag with
`@` (mmjax's own tags are already clean, see `evaluate/suite_report.scalar_tag`). Every other
warning still shows. When stderr is not a terminal (a log file, a pipe), TFDS progress bars
are switched off (TFDS is loaded by then in every tool that reads data): a file gets no
carriage-return bars.
"""

from __future__ import annotations

import logging
import re
import sys

from absl import logging as absl_logging

# (logger name, message pattern) of known harmless warnings.
KNOWN_NOISE = (
    ('absl', re.compile(r'Type handler registry type .* overriding ')),
    ('absl', re.compile(r'CheckpointManagerOptions\.read_only=True, setting ')),
    ('absl', re.compile(r'Given directory is read only=')),
    ('absl', re.compile(r'Variant folder .* has no dataset_info\.json')),
    ('tensorboardX.summary', re.compile(r'Summary name .* is illegal; using .* instead')),
)
QUIET_LOGGERS = ('absl', 'jax._src', 'orbax', 'tensorflow_datasets')


class KnownNoiseFilter(logging.Filter):
  """Drops the records of `KNOWN_NOISE`; passes everything else."""

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(record.name == name and pattern.search(message)
                   for name, pattern in KNOWN_NOISE)


_FILTER = KnownNoiseFilter()


def filter_known_noise() -> None:
  """Adds the filter to the loggers of `KNOWN_NOISE`; changes nothing else (run when mmjax is
  imported, so notebooks are spared the noise too)."""
  for name in {n for n, _ in KNOWN_NOISE}:
    logger = absl_logging.get_absl_logger() if name == 'absl' else logging.getLogger(name)
    if _FILTER not in logger.filters:
      logger.addFilter(_FILTER)


def install() -> None:
  """For command-line tools: log lines as `LEVEL logger: message` (INFO and up; WARNING and up
  for the chatty libraries), known noise filtered; safe to call more than once."""
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
  # Importing the library may already have given the root logger a handler (absl's), which makes
  # basicConfig a no-op: the level is set apart so INFO lines such as 'resumed from' still show.
  logging.getLogger().setLevel(logging.INFO)
  for name in QUIET_LOGGERS:
    logging.getLogger(name).setLevel(logging.WARNING)
  filter_known_noise()
  tfds = sys.modules.get('tensorflow_datasets')   # loaded by every tool that reads data
  if tfds is not None and not _is_terminal(sys.stderr):
    tfds.disable_progress_bar()


def _is_terminal(stream) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):   # closed or replaced streams
    return False
