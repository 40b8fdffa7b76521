"""Pixels cross to the device as uint8 and audio as int16: the embeddings normalise them there,
to exactly what the host used to send as float32."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mmjax_testing import demo_config
from mmjax.models import embeddings


def test_uint8_pixels_and_int16_audio_embed_like_their_normalised_floats():
  cfg = demo_config().model
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
  video = rng.integers(0, 256, (2, 4, 32, 32, 3)).astype(np.uint8)
  audio = rng.integers(-32768, 32768, (2, 2048)).astype(np.int16)
  cases = [(embeddings.ImageEmbed, image, image / 127.5 - 1),
           (embeddings.VideoEmbed, video, video / 127.5 - 1),
           (embeddings.AudioEmbed, audio, audio / 32768.0)]
  for module, raw, floats in cases:
    embed = module(cfg, rngs=nnx.Rngs(0), dtype=jnp.float32)
    got, mask = embed(jnp.asarray(raw))
    want, _ = embed(jnp.asarray(floats, jnp.float32))
    np.testing.assert_allclose(got, want, atol=1e-5, err_msg=module.__name__)
    assert mask.shape == got.shape[:2]


def test_normalisation_maps_the_ends_of_the_ranges():
  px = embeddings.normalize_pixels(jnp.array([0, 255], jnp.uint8))
  np.testing.assert_allclose(px, [-1.0, 1.0], atol=1e-6)
  au = embeddings.normalize_audio(jnp.array([-32768, 16384], jnp.int16))
  np.testing.assert_allclose(au, [-1.0, 0.5])
  floats = jnp.array([0.25, -0.5], jnp.float32)
  assert embeddings.normalize_pixels(floats) is floats  # already normalised: untouched


def test_the_model_normalises_uint8_and_int16_before_its_compute_dtype():
  """The path training takes (`MultimodalModel.encode`), in float32 and bfloat16: raw loader
  inputs give the embeddings of their normalised floats, not of 0..255 taken as floats."""
  from mmjax.models.model import build_model
  rng = np.random.default_rng(1)
  raw = {'image': rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8),
         'video': rng.integers(0, 256, (2, 8, 32, 32, 3)).astype(np.uint8),
         'audio': rng.integers(-32768, 32768, (2, 4096)).astype(np.int16)}
  floats = {'image': raw['image'] / 127.5 - 1, 'video': raw['video'] / 127.5 - 1,
            'audio': raw['audio'] / 32768.0}
  for dtype, atol in (('float32', 1e-5), ('bfloat16', 3e-2)):
    model = build_model(demo_config(f'--config.model.dtype={dtype}'), nnx.Rngs(0))
    for m in raw:
      got, _ = model.encode(m, jnp.asarray(raw[m]), None)
      want, _ = model.encode(m, jnp.asarray(floats[m], jnp.float32), None)
      np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                                 atol=atol, err_msg=f'{m} {dtype}')
      wrong, _ = model.encode(m, jnp.asarray(raw[m], jnp.float32), None)  # unnormalised
      assert np.abs(np.asarray(wrong, np.float32) - np.asarray(want, np.float32)).max() > 0.1
