"""The export's errors: bad input (one sentence, exit 2) and a failed parity check (exit 1)."""


class ExportError(ValueError):
  """Bad export input (workdir, step, format, dtype, output): one sentence naming the fix."""


class ParityError(RuntimeError):
  """An exported artifact's embeddings differ from the training checkpoint's beyond tolerance."""
