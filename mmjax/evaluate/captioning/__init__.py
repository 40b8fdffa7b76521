"""`python -m mmjax.evaluate.captioning`: see `__main__.py`; the library is `mmjax/evaluate/captions.py`."""
