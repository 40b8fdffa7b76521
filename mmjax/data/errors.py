"""The one exception type of the data pipeline."""

from mmjax.errors import UserError


class DataError(UserError, ValueError):
  """Bad data input (dataset, split, feature, modality, tokenizer), in one sentence for people."""
