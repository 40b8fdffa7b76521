"""`python -m mmjax.evaluate.captioning`: see `__main__.py`; the library is `mmjax/evaluate/caption_metrics.py`."""
