"""A dead peer ends the job in seconds: PeerWatch with a fake coordination service and clock."""

from __future__ import annotations

import pytest

from mmjax.train import distributed


class FakeService:
  """The key-value store of JAX's coordination service; `down` makes every call fail."""

  def __init__(self):
    self.store, self.down = {}, False

  def key_value_set(self, key, value, allow_overwrite=False):
    if self.down:
      raise RuntimeError('UNAVAILABLE: connection refused')
    assert allow_overwrite or key not in self.store
    self.store[key] = value

  def key_value_dir_get(self, prefix):
    if self.down:
      raise RuntimeError('UNAVAILABLE: connection refused')
    return [(k, v) for k, v in self.store.items() if k.startswith(prefix)]


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def _watches(n=3, timeout=10.0):
  service, clock = FakeService(), Clock()
  return service, clock, [distributed.PeerWatch(service, p, n, timeout=timeout, clock=clock)
                          for p in range(n)]


def test_a_silent_peer_is_named_after_the_timeout_and_not_before():
  _, clock, (w0, w1, w2) = _watches()
  for _ in range(5):                       # everyone beats: nobody is judged
    clock.now += 3
    for w in (w2, w1, w0):                 # w0 reads w2's newest counter at once
      w.beat_once()
    assert w0.verdict() is None
  for _ in range(3):                       # process 2 was SIGKILLed: 9 s of silence
    clock.now += 3
    w0.beat_once(), w1.beat_once()
  assert w0.verdict() is None
  clock.now += 2                           # 11 s > 10 s
  w0.beat_once()
  assert w0.verdict() == (
      'process 2 of 3 has shown no sign of life for 11 s (MMJAX_PEER_TIMEOUT=10): it or its '
      'host died, so process 0 ends too (exit 1) and the job can be restarted; it resumes from '
      'the newest checkpoint.')


def test_a_peer_that_ended_on_purpose_is_not_a_dead_one():
  _, clock, (w0, w1, w2) = _watches()
  for w in (w0, w1, w2):
    w.beat_once()
  w2.stop(done=True)                       # finished its steps; waits in JAX's shutdown
  clock.now += 30
  w0.beat_once(), w1.beat_once()
  assert w0.verdict() is None and w1.verdict() is None


def test_a_coordination_service_that_stopped_answering_ends_the_others():
  service, clock, (w0, w1, _) = _watches(timeout=10.0)
  w1.beat_once()
  service.down = True                      # process 0 (which hosts the service) is gone
  for _ in range(2):
    clock.now += 5
    with pytest.raises(RuntimeError):
      w1.beat_once()
  assert w1.verdict() is None              # 10 s: not yet
  clock.now += 2
  with pytest.raises(RuntimeError):
    w1.beat_once()
  assert w1.verdict().startswith('the coordination service (process 0) has not answered for '
                                 '12 s: process 0 or its host is gone, so process 1 ends too')


def test_a_process_that_was_stalled_itself_does_not_blame_its_peers():
  _, clock, (w0, w1) = _watches(n=2)
  w1.beat_once(), w0.beat_once()
  clock.now += 60                          # w0 got no CPU for a minute (nor did its peer)
  w0.beat_once()
  assert w0.verdict() is None              # one round of its own since: no judgement yet


def test_the_judge_thread_ends_the_process_by_itself():
  import threading
  import time
  service, ended = FakeService(), threading.Event()
  said = []
  watch = distributed.PeerWatch(service, 0, 2, timeout=0.3, interval=0.05,
                                end=lambda s: (said.append(s), ended.set()))
  t0 = time.monotonic()
  watch.start()                            # process 1 never beats
  assert ended.wait(5) and time.monotonic() - t0 < 2
  watch.stop(done=False)
  assert said[0].startswith('process 1 of 2 has shown no sign of life')


def test_peer_timeout_is_read_from_the_environment():
  with pytest.raises(distributed.LaunchError, match='MMJAX_PEER_TIMEOUT'):
    distributed._start_peer_watch({'MMJAX_PEER_TIMEOUT': 'soon'})
  assert distributed._start_peer_watch({'MMJAX_PEER_TIMEOUT': '0'}) is None
