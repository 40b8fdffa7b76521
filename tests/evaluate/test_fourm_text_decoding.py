"""4M text generation (`fourm_generation.generate_text`) against a scripted predictor: the end
token at the asked length is an input, only positions before it are queried, the most confident
query is fixed first and fed back, and the end token / ids past the tokenizer are never chosen."""

import numpy as np

from mmjax.evaluate import fourm_generation as gen

SIZE, V = 6, 12


def test_text_fills_the_asked_length_most_confident_first(monkeypatch):
  calls = []

  def predict(params, src_ids, src_avail, ids, known, query):
    calls.append((ids.copy(), known.copy(), query.copy()))
    b = ids.shape[0]
    logits = np.full((b, SIZE, V + 3), -5.0, np.float32)
    logits[..., 0] = 50.0                                # the end token: never inside a caption
    logits[..., V:] = 60.0                               # past the tokenizer's vocabulary
    for i in range(b):
      for j in range(SIZE):
        # position j wants token j + 1 + (known positions), with confidence rising in j
        logits[i, j, j + 1 + known[i].sum()] = float(j)
    logits.setflags(write=False)                         # as np.asarray of a jax.Array
    return logits

  monkeypatch.setattr(gen, '_predictor', lambda graphdef, src, tgt: predict)
  src = np.zeros((2, 4), np.int32)
  out = gen.generate_text(None, None, 'image', src, src + 1, np.array([3, 1]), SIZE, vocab=V)
  # Row 0: the end token at 3 is known from the start; queries fill 2, then 1, then 0
  # (most confident = highest position), each seeing one more known token.
  np.testing.assert_array_equal(out[0], [0 + 1 + 3, 1 + 1 + 2, 2 + 1 + 1, 0, 0, 0])
  assert out.max() < V
  np.testing.assert_array_equal(out[1], [0 + 1 + 1, 0, 0, 0, 0, 0])
  ids0, known0, query0 = calls[0]
  np.testing.assert_array_equal(known0, [[0, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0]])
  np.testing.assert_array_equal(query0, [[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
  assert len(calls) == 3
  _, known2, query2 = calls[2]
  np.testing.assert_array_equal(query2, [[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(known2[0], [0, 1, 1, 1, 0, 0])
