"""Experiment configs (`get_config(arg=None)` each); installed with mmjax as `mmjax.configs`, so
`--config=NAME[:arg]` finds them by name."""
