"""Renders one real 8x8 handwritten-digit scan as image, video, audio and captions.

Pure numpy, deterministic: every random choice comes from a generator seeded by the scan id, so
rendering twice gives identical arrays. Used by `builder.py`; the tests use it to check
that every modality of an example is derived from its scan.
"""

from __future__ import annotations

import numpy as np

SCAN_SIZE = 8
IMAGE_SIZE = 32
NUM_FRAMES = 8
SAMPLE_RATE = 8000
AUDIO_SAMPLES = 4096
BAND_HZ = tuple(float(f) for f in np.geomspace(300.0, 3400.0, SCAN_SIZE))  # lowest first
CLASS_NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')
TEST_FRACTION = 0.2
MIN_CAPTIONS, MAX_CAPTIONS = 2, 4  # phrasings per example in the `captions` feature
_SEED = 20240607

# Training phrasings. Varied English so that unseen eval prompts ("a photo of the number seven.")
# still tokenise into known pieces; every letter a-z occurs at least once.
TEMPLATES = (
    'a handwritten {}',
    'the digit {} written by hand',
    'a scanned image of the number {}.',
    'a small blurry {} on white paper',
    'a picture of a handwritten {}',
    'a person quickly jotted down a {}',
    'the numeral {}, drawn with a pen',
    'a low resolution scan of the digit {}',
    'an example of the number {}',
    'this is a {}.',
    'a messy {} in black and white',
    'a clean, thick {} from a form',
    'my handwriting of a {}',
    'a pixelated photo showing the digit {}',
    'the number {} as a tiny sketch',
    'a zoomed in view of an old {}',
)


def load_scans() -> tuple[np.ndarray, np.ndarray]:
  """The 1,797 scikit-learn scans, `[n, 8, 8]` float32 in [0, 1] (ink = 1), and labels `[n]`."""
  from sklearn.datasets import load_digits  # bundled with scikit-learn, no download
  digits = load_digits()
  return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def split_ids(labels: np.ndarray) -> dict[str, np.ndarray]:
  """Stratified, deterministic train/test split by scan id: ~20% of each class is test."""
  rng = np.random.default_rng(_SEED)
  test = []
  for c in range(len(CLASS_NAMES)):
    ids = np.flatnonzero(labels == c)
    test.append(rng.permutation(ids)[:int(round(TEST_FRACTION * len(ids)))])
  test_ids = np.sort(np.concatenate(test))
  train_ids = np.setdiff1d(np.arange(len(labels)), test_ids)
  return {'train': train_ids, 'test': test_ids}


def example_params(scan_id: int) -> dict:
  """Per-example random choices: video motion, audio pitch/tempo/offset/noise, caption."""
  rng = np.random.default_rng([_SEED, int(scan_id)])
  tempo = rng.uniform(0.8, 1.0)
  column = AUDIO_SAMPLES / SCAN_SIZE * tempo  # samples per scan column
  return {
      'shift': rng.uniform(-4.0, 4.0, size=(2, 2)),     # start/end (dy, dx) in pixels
      'angle': rng.uniform(-12.0, 12.0, size=2),        # start/end rotation in degrees
      'scale': rng.uniform(0.85, 1.1, size=2),          # start/end zoom
      'pitch': 2.0 ** (rng.uniform(-1.0, 1.0) / 12.0),  # +-1 semitone
      'column': column,
      'offset': rng.uniform(0.0, AUDIO_SAMPLES - SCAN_SIZE * column),
      'phase': rng.uniform(0.0, 2 * np.pi, size=SCAN_SIZE),
      'noise': rng.uniform(0.01, 0.08),
      'noise_seed': int(rng.integers(2**31)),
      'template': int(rng.integers(len(TEMPLATES))),
  }


def _sample(scan: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """Bilinear sample of `scan [8, 8]` at fractional scan coordinates, zero outside."""
  padded = np.pad(scan, 1)
  r, c = np.clip(rows + 1, 0, SCAN_SIZE + 0.999), np.clip(cols + 1, 0, SCAN_SIZE + 0.999)
  r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
  r1, c1 = np.minimum(r0 + 1, SCAN_SIZE + 1), np.minimum(c0 + 1, SCAN_SIZE + 1)
  wr, wc = r - r0, c - c0
  top = padded[r0, c0] * (1 - wc) + padded[r0, c1] * wc
  bottom = padded[r1, c0] * (1 - wc) + padded[r1, c1] * wc
  return top * (1 - wr) + bottom * wr


def _warp(scan: np.ndarray, shift, angle, scale) -> np.ndarray:
  """The scan drawn at 32x32 after zoom, rotation (degrees) and shift (pixels), one pose per
  frame: `shift [F, 2]`, `angle [F]`, `scale [F]` -> `[F, 32, 32]`."""
  shift, angle = np.asarray(shift, np.float64), np.deg2rad(np.asarray(angle, np.float64))
  scale = np.asarray(scale, np.float64)[:, None, None]
  factor = IMAGE_SIZE / SCAN_SIZE
  centre = (IMAGE_SIZE - 1) / 2
  grid = np.arange(IMAGE_SIZE) - centre
  y = grid[None, :, None] - shift[:, 0, None, None]
  x = grid[None, None, :] - shift[:, 1, None, None]
  cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
  src_y = (cos * y + sin * x) / scale
  src_x = (-sin * y + cos * x) / scale
  to_scan = lambda v: (v + centre + 0.5) / factor - 0.5
  return _sample(scan, to_scan(src_y), to_scan(src_x))


def _to_rgb(gray: np.ndarray) -> np.ndarray:
  return np.repeat(np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def render_image(scan: np.ndarray) -> np.ndarray:
  """The scan upsampled (bilinear) to `[32, 32, 3]` uint8, ink bright on black."""
  return _to_rgb(_warp(scan, [(0.0, 0.0)], [0.0], [1.0])[0])


def render_video(scan: np.ndarray, params: dict) -> np.ndarray:
  """`[8, 32, 32, 3]` uint8: the scan moving from one (shift, angle, scale) pose to another."""
  a = np.linspace(0.0, 1.0, NUM_FRAMES)
  lerp = lambda v: np.multiply.outer(1 - a, v[0]) + np.multiply.outer(a, v[1])  # [F, ...]
  return _to_rgb(_warp(scan, lerp(params['shift']), lerp(params['angle']), lerp(params['scale'])))


def audio_envelope(scan: np.ndarray, params: dict) -> np.ndarray:
  """Band energies over time, `[8 bands, 4096]`: band b (lowest pitch first) plays scan row 7-b,
  scan columns play left to right, each for `params['column']` samples from `params['offset']`."""
  t = (np.arange(AUDIO_SAMPLES) - params['offset']) / params['column']
  col = np.floor(t).astype(int)
  inside = (col >= 0) & (col < SCAN_SIZE)
  env = np.where(inside[None], scan[::-1][:, np.clip(col, 0, SCAN_SIZE - 1)], 0.0)
  # 32-sample moving average: linear 4 ms cross-fades between columns instead of clicks.
  total = np.cumsum(np.pad(env, ((0, 0), (17, 15))), axis=1)  # leading 0, then 16 + 15 pads
  return (total[:, 32:] - total[:, :-32]) / 32.0


def render_audio(scan: np.ndarray, params: dict) -> np.ndarray:
  """The scan sonified: `[4096]` float32 at 8 kHz, peak 0.9 before additive Gaussian noise."""
  env = audio_envelope(scan, params)
  n = np.arange(AUDIO_SAMPLES) / SAMPLE_RATE
  freqs = np.asarray(BAND_HZ) * params['pitch']
  tones = np.sin(2 * np.pi * freqs[:, None] * n[None] + params['phase'][:, None])
  wave = (env * tones).sum(0)
  wave *= 0.9 / max(np.abs(wave).max(), 1e-6)
  noise = np.random.default_rng(params['noise_seed']).normal(0.0, params['noise'], AUDIO_SAMPLES)
  return (wave + noise).astype(np.float32)


def caption(label: int, params: dict) -> str:
  """One training phrasing naming the digit in English."""
  return TEMPLATES[params['template']].format(CLASS_NAMES[int(label)])


def captions(label: int, scan_id: int, params: dict) -> list[str]:
  """MIN_CAPTIONS..MAX_CAPTIONS different phrasings of the same scan (MIL-NCE positives), the
  first being `caption(label, params)`; drawn from their own generator, so the other modalities
  and the single caption are unchanged."""
  rng = np.random.default_rng([_SEED, int(scan_id), 1])
  count = int(rng.integers(MIN_CAPTIONS, MAX_CAPTIONS + 1))
  others = [t for t in range(len(TEMPLATES)) if t != params['template']]
  chosen = [params['template']] + rng.choice(others, count - 1, replace=False).tolist()
  return [TEMPLATES[t].format(CLASS_NAMES[int(label)]) for t in chosen]


# -- pen strokes (dataset version 1.2.0): the ink as a point set and as the pen's path ----------

NUM_POINTS = 64       # points per digit in `point_cloud` and steps in `time_series`
_INK = 0.3            # ink threshold of the upsampled scan, in [0, 1]
_PEN_UP = 0.3         # a step longer than this (in [-1, 1] units) lifts the pen


def stroke_points(scan: np.ndarray, scan_id: int) -> np.ndarray:
  """The pen strokes as an unordered point set `[64, 3]` float32: points drawn on the inked
  pixels of the upsampled scan (probability ~ ink), jittered within their pixel, as
  (x right, y up) in [-1, 1] with z = 0 (a 2-D point set in the plane). Its own generator: the
  other features are unchanged."""
  gray = _warp(scan, [(0.0, 0.0)], [0.0], [1.0])[0]                     # [32, 32] in [0, 1]
  weight = np.where(gray > _INK, gray, 0.0).ravel()
  if weight.sum() <= 0:  # an empty scan: fall back to all the ink there is
    weight = gray.ravel() + 1e-6
  rng = np.random.default_rng([_SEED, int(scan_id), 2])
  cells = rng.choice(weight.size, NUM_POINTS, p=weight / weight.sum())
  rows, cols = np.divmod(cells, IMAGE_SIZE)
  jitter = rng.uniform(0.0, 1.0, (NUM_POINTS, 2))
  x = (cols + jitter[:, 1]) / IMAGE_SIZE * 2 - 1
  y = 1 - (rows + jitter[:, 0]) / IMAGE_SIZE * 2
  return np.stack([x, y, np.zeros(NUM_POINTS)], axis=1).astype(np.float32)


def pen_trajectory(points: np.ndarray) -> np.ndarray:
  """The same strokes as the pen would draw them: `[64, 3]` float32 of (x, y, pen down) over
  time. The pen starts at the top-most point (then the left-most) and always moves to the
  nearest point not yet drawn; a step longer than 0.3 is a pen-up move (pen down = 0)."""
  xy = points[:, :2].astype(np.float64)
  left = list(range(len(xy)))
  current = min(left, key=lambda i: (-xy[i, 1], xy[i, 0]))
  order, pen = [current], [1.0]
  left.remove(current)
  while left:
    d = np.linalg.norm(xy[left] - xy[current], axis=1)
    j = int(np.argmin(d))
    current = left.pop(j)
    order.append(current)
    pen.append(1.0 if d[j] <= _PEN_UP else 0.0)
  return np.concatenate([xy[order], np.asarray(pen)[:, None]], axis=1).astype(np.float32)
