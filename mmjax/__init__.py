"""mmjax: multimodal pretraining in JAX (see README.md)."""

from mmjax import log_filters as _log_filters

_log_filters.filter_known_noise()  # orbax's known start-up noise; every other warning shows
