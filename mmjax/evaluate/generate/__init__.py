"""`python -m mmjax.evaluate.generate`: see `__main__.py`; the library is `mmjax/evaluate/generation_run.py`."""
