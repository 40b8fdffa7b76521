"""Data: datasets -> host batches. Public API in `pipeline.py` (train iterators, eval batches,
dataset facts, tokenizer, `validate_task`); tasks and the AGD sampler in `tasks.py`; config keys
in `options.py`; the embedded dataset in `digits_builder.py` / `digits_render.py`."""
