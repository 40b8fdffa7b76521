"""Data: datasets -> host batches. Public API in `pipeline.py` (train iterators, eval batches,
dataset facts, tokenizer, `validate_task`) (the task description itself is
`mmjax/core/tasks.py`, the AGD sampler `mmjax/train/agd_sampler.py`); config keys
in `options.py`; the embedded dataset in `digits/`; conversion of the user's files in `convert/`."""
