"""Which accelerator a kernel targets, and whether Pallas runs in interpret mode.

Kernels take a `backend` ('cpu', 'gpu' or 'tpu'; None = the default JAX backend) because GPU
and TPU kernels tile differently, and an ahead-of-time compile for a TPU topology runs on a CPU
host. `interpret=None` means interpret on CPU only.
"""

import contextlib
import contextvars

import jax

_TARGET: contextvars.ContextVar = contextvars.ContextVar('mmjax_kernel_target', default=None)
_REFERENCE: contextvars.ContextVar = contextvars.ContextVar('mmjax_kernel_reference',
                                                           default=False)

BACKENDS = ('cpu', 'gpu', 'tpu')
_ALIASES = {'cuda': 'gpu', 'rocm': 'gpu'}


@contextlib.contextmanager
def target(backend: str):
  """Kernels traced in this block target `backend` (e.g. 'tpu' while compiling ahead of time
  for a TPU topology on a CPU host), so `auto` picks the TPU kernels and compiles them."""
  token = _TARGET.set(resolve_backend(backend))
  try:
    yield
  finally:
    _TARGET.reset(token)


@contextlib.contextmanager
def reference():
  """Kernels traced in this block are their pure-JAX references, whatever impl is asked for:
  how a program's model FLOPs are counted (its mathematics, not a kernel's tiles). JAX caches
  traces without seeing this switch; clear them (`jax.clear_caches()`) around its use."""
  token = _REFERENCE.set(True)
  try:
    yield
  finally:
    _REFERENCE.reset(token)


def use_reference() -> bool:
  """Whether a `reference()` block is in force."""
  return _REFERENCE.get()


def resolve_backend(backend: str | None = None) -> str:
  """Returns 'cpu', 'gpu' or 'tpu' for `backend`; when None, the `target(...)` in force, else
  jax.default_backend()."""
  if backend is None:
    backend = _TARGET.get()
  name = jax.default_backend() if backend is None else backend
  name = _ALIASES.get(name, name)
  if name not in BACKENDS:
    raise ValueError(f'Unknown backend {backend!r}; expected one of {BACKENDS} or None.')
  return name


def resolve_interpret(interpret: bool | None, backend: str) -> bool:
  """Interpret mode: as given, else True exactly when the backend is the CPU."""
  if interpret is None:
    return backend == 'cpu'
  if not interpret and backend == 'cpu':
    raise ValueError('Pallas kernels cannot be compiled for the CPU; pass interpret=True '
                     '(or interpret=None) there.')
  return bool(interpret)


def check_choice(name: str, value: str, accepted: tuple[str, ...]) -> str:
  """Returns `value` if it is one of `accepted`, else raises a ValueError listing them."""
  if value not in accepted:
    raise ValueError(f'Unknown {name} {value!r}; accepted: {", ".join(accepted)}.')
  return value


def round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple


def next_power_of_2(x: int) -> int:
  return 1 if x <= 1 else 1 << (x - 1).bit_length()
