"""Which tokenizer a run used, recorded in its workdir, so no later step reads with another.

A run tokenises all its text with one SentencePiece model (`pipeline.load_tokenizer`). Training
writes `WORKDIR/tokenizer.json` (sha256, vocabulary size, file) when it starts; resuming,
evaluating and exporting that workdir recompute the hash of the tokenizer they would use and
refuse, in one sentence, when it differs (a tokenizer.model retrained in place, another
`config.text.tokenizer`): the ids the model learnt would silently change meaning.
"""

from __future__ import annotations

import json

from mmjax import paths
from mmjax.data import pipeline
from mmjax.data.errors import DataError

RECORD = 'tokenizer.json'


def _uses_text(config) -> bool:
  tasks = config.get('tasks', None) or {}
  return any('text' in str(tasks[k].get('modalities', '')) for k in tasks.keys())


def recorded(workdir: str) -> dict | None:
  """The workdir's tokenizer record, or None (no record: a run before records, or no text)."""
  path = paths.join(workdir, RECORD)
  return json.loads(paths.read_text(path)) if paths.exists(path) else None


def describe(tokenizer) -> dict:
  return {'sha256': tokenizer.sha256, 'vocab_size': tokenizer.vocab_size,
          'model_file': tokenizer.model_file, 'lowercase': tokenizer.lowercase}


def check(workdir: str, tokenizer, doing: str) -> None:
  """Raises DataError when `workdir` recorded another tokenizer than `tokenizer`; `doing` says
  what was about to happen ('resume', 'evaluate', 'export')."""
  if tokenizer is None or not workdir:
    return
  before = recorded(workdir)
  if before is None or before.get('sha256') == tokenizer.sha256:
    return
  raise DataError(
      f'Cannot {doing} {workdir}: it was trained with tokenizer {before.get("model_file")} '
      f'(sha256 {before.get("sha256", "")[:12]}) but this config tokenises with '
      f'{tokenizer.model_file} (sha256 {tokenizer.sha256[:12]}); set config.text.tokenizer to '
      'the tokenizer the run was trained with.')


def check_run(config, workdir: str, doing: str) -> None:
  """`check` with the config's own tokenizer (nothing to check for a run without text)."""
  if not workdir or not _uses_text(config) or not paths.exists(paths.join(workdir, RECORD)):
    return
  try:
    tokenizer = pipeline.load_tokenizer(config)
  except DataError:  # no tokenizer to compare: the step that needs one says so itself
    return
  check(workdir, tokenizer, doing)


def record(config, workdir: str) -> None:
  """Writes the run's tokenizer record (training start; unchanged on resume)."""
  if not _uses_text(config):
    return
  text = json.dumps(describe(pipeline.load_tokenizer(config)), indent=1)
  paths.write_text(paths.join(workdir, RECORD), text)
