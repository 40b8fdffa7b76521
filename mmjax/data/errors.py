"""The one exception type of the data pipeline."""


class DataError(ValueError):
  """Bad data input (dataset, split, feature, modality, tokenizer), in one sentence for people."""
