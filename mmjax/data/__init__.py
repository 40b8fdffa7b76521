"""Data: datasets -> host batches. Public API in `pipeline.py` (train iterators, eval batches,
dataset facts, tokenizer, `validate_task`); the AGD sampler in `agd_sampler.py` (the task
description itself is `mmjax/core/tasks.py`); config keys
in `options.py`; the embedded dataset in `digits/`; conversion of the user's files in `convert/`."""
