"""The export's errors: bad input (one sentence, exit 2) and a failed parity check (exit 1).

`ExportError` is the ground floor's (`mmjax.core.exports.params_io`): reading an export raises it too.
"""

from mmjax.core.exports.params_io import ExportError


class ParityError(RuntimeError):
  """An exported artifact's embeddings differ from the training checkpoint's beyond tolerance."""


__all__ = ['ExportError', 'ParityError']
