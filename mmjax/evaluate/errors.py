"""The evaluation's user error: bad workdir, step, dataset or modality, as one clear sentence."""

from mmjax.errors import UserError


class EvalError(UserError, ValueError):
  """Bad evaluation input, as one sentence naming the problem and the fix."""
