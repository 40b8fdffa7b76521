"""CoCa's text decoder: causality, padding of the encoder tokens, targets and greedy decoding."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mmjax.models.caption_decoding import beam_decode, greedy_decode
from mmjax.models.text_decoder import TextDecoder
from mmjax.train.generative_objectives import caption_targets


def _cfg():
  return ml_collections.ConfigDict(dict(
      width=32, num_heads=4, mlp_dim=64, vocab_size=50, max_text_length=12,
      caption_decoder=dict(unimodal_layers=1, multimodal_layers=2)))


def _decoder():
  return TextDecoder(_cfg(), rngs=nnx.Rngs(0), dtype=jnp.float32)


def test_changing_a_future_token_leaves_earlier_logits_unchanged():
  dec = _decoder()
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 50, size=(2, 10))
  ctx = jnp.asarray(rng.normal(size=(2, 7, 32)), jnp.float32)
  cmask = jnp.ones((2, 7), jnp.int32)
  base = dec(jnp.asarray(ids), ctx, cmask)
  for t in (3, 9):
    changed = ids.copy()
    changed[:, t] = (changed[:, t] + 7) % 50
    out = dec(jnp.asarray(changed), ctx, cmask)
    np.testing.assert_allclose(out[:, :t], base[:, :t], atol=1e-6)
    assert np.abs(np.asarray(out[:, t:] - base[:, t:])).max() > 1e-4  # later ones do change


def test_padded_context_tokens_are_ignored_and_context_matters():
  dec = _decoder()
  rng = np.random.default_rng(1)
  ids = jnp.asarray(rng.integers(0, 50, size=(2, 6)))
  ctx = np.asarray(rng.normal(size=(2, 5, 32)), np.float32)
  cmask = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
  base = dec(ids, jnp.asarray(ctx), cmask)
  ctx2 = ctx.copy()
  ctx2[0, 3:] += 5.0
  np.testing.assert_allclose(dec(ids, jnp.asarray(ctx2), cmask)[0], base[0], atol=1e-6)
  ctx2[1, 0] += 5.0
  assert np.abs(np.asarray(dec(ids, jnp.asarray(ctx2), cmask)[1] - base[1])).max() > 1e-4


def test_shift_right_and_targets():
  dec = _decoder()
  text = jnp.asarray([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
  mask = (text > 0).astype(jnp.int32)
  np.testing.assert_array_equal(dec.shift_right(text), [[50, 5, 6, 7, 0], [50, 8, 9, 10, 11]])
  targets, tmask = caption_targets(text, mask)
  np.testing.assert_array_equal(targets, text)
  np.testing.assert_array_equal(tmask, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])


class _Stub:
  """A model whose decoder always prefers a fixed sequence, then the end token."""

  class spec:
    captions = ('image',)

  def __init__(self, seq, vocab=8):
    self.seq, self.vocab = seq, vocab
    self.text_decoder = _decoder()

  def encode_tokens(self, modality, x):
    return jnp.zeros((x.shape[0], 2, 4)), jnp.ones((x.shape[0], 2)), {}

  def caption_logits(self, ids, h, tmask):
    want = jnp.asarray(self.seq + [0] * (ids.shape[1] - len(self.seq)))
    return jax.nn.one_hot(jnp.broadcast_to(want, ids.shape), self.vocab)


def test_greedy_decode_stops_at_the_end_token():
  out = greedy_decode(_Stub([3, 4, 5]), 'image', jnp.zeros((2, 1)), 6)
  np.testing.assert_array_equal(out, [[3, 4, 5, 0, 0, 0]] * 2)


class _Chain:
  """A model whose next-token distribution depends on the previous token only (BOS = 4):
  greedy takes 1 (p .6) and then wanders (p 1/3 each); beam finds 2, 3, end (p .4)."""

  class spec:
    captions = ('image',)

  class text_decoder:
    bos_id = 4

    @staticmethod
    def shift_right(ids):
      return jnp.concatenate([jnp.full_like(ids[:, :1], 4), ids[:, :-1]], axis=1)

  eps = 1e-6
  table = np.log(np.array([
      [1, eps, eps, eps],          # after end: end
      [eps, 1 / 3, 1 / 3, 1 / 3],  # after 1
      [eps, eps, eps, 1],          # after 2
      [1, eps, eps, eps],          # after 3: end
      [eps, .6, .4, eps],          # after BOS
  ]))

  def encode_tokens(self, modality, x):
    return jnp.zeros((x.shape[0], 2, 4)), jnp.ones((x.shape[0], 2)), {}

  def caption_logits(self, ids, h, tmask):
    return jnp.asarray(self.table, jnp.float32)[ids]


def test_beam_search_finds_the_more_likely_caption_that_greedy_misses():
  x = jnp.zeros((3, 1))
  np.testing.assert_array_equal(greedy_decode(_Chain(), 'image', x, 5), [[1, 1, 1, 1, 1]] * 3)
  np.testing.assert_array_equal(beam_decode(_Chain(), 'image', x, 5, 2), [[2, 3, 0, 0, 0]] * 3)
  np.testing.assert_array_equal(beam_decode(_Chain(), 'image', x, 5, 1), [[1, 1, 1, 1, 1]] * 3)
