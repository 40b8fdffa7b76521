"""One trainer per workdir: a lease in `WORKDIR/trainer.lease.json`, on local disks and `gs://`.

The record names its holder (host, pid, since when) and when it was last renewed. Every change
is conditional on the version the writer read, so two trainers never both believe they hold it:
on `gs://` through object generation preconditions (`ifGenerationMatch`; 0 = must not exist),
on a local or shared disk through a `generation` counter in the record, compared and bumped
under an exclusive `flock` of the file itself. The holder renews it every `ttl_s / 4` seconds
from a daemon thread; a lease not renewed for `ttl_s` seconds, or whose holder process is gone
(same host), is stale and the next trainer takes it over. A trainer that finds a live holder is
refused with `WorkdirBusy` (a `UserError`: exit 2) before it writes anything.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time

from mmjax import paths
from mmjax.errors import StorageError, UserError

log = logging.getLogger(__name__)

LEASE_NAME = 'trainer.lease.json'
DEFAULT_TTL_S = 120.0


class WorkdirBusy(UserError):
  """Another live trainer holds the workdir's lease (one sentence naming it)."""


class LeaseLost(StorageError):
  """The lease was taken over by another trainer while this one ran."""


class _Conflict(Exception):
  """The record changed since it was read (a precondition failed)."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class _LocalStore:
  """The record as a file, compared and rewritten in place under an exclusive `flock` of the
  file itself (no side file: a released lease leaves nothing behind). An empty file is free."""

  def __init__(self, path: str):
    self.path = path

  @contextlib.contextmanager
  def _locked(self, create: bool):
    """The locked file's descriptor; FileNotFoundError when it does not exist and not `create`.
    A file unlinked while we waited for its lock is opened again."""
    while True:
      fd = os.open(self.path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
      fcntl.flock(fd, fcntl.LOCK_EX)
      try:
        if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
          break
      except FileNotFoundError:
        pass
      os.close(fd)
    try:
      yield fd
    finally:
      os.close(fd)  # releases the lock

  @staticmethod
  def _read_fd(fd: int):
    os.lseek(fd, 0, os.SEEK_SET)
    data = b''
    while chunk := os.read(fd, 1 << 16):
      data += chunk
    if not data.strip():
      return None, 0
    try:
      record = json.loads(data)
    except ValueError:  # a foreign file: treat as an expired record
      return {}, -1
    return record, int(record.get('generation', 0))

  def read(self):
    try:
      with self._locked(create=False) as fd:
        return self._read_fd(fd)
    except FileNotFoundError:
      return None, 0

  def write(self, record: dict, if_generation: int) -> int:
    with self._locked(create=True) as fd:
      _, generation = self._read_fd(fd)
      if generation != if_generation:
        raise _Conflict()
      record = {**record, 'generation': max(generation, 0) + 1}
      data = json.dumps(record).encode()
      os.ftruncate(fd, 0)
      os.pwrite(fd, data, 0)
      os.fsync(fd)
      return record['generation']

  def delete(self, if_generation: int) -> None:
    try:
      with self._locked(create=False) as fd:
        if self._read_fd(fd)[1] == if_generation:
          os.unlink(self.path)
    except FileNotFoundError:
      pass


class _GcsStore:
  """The record as an object; compare-and-swap through generation preconditions."""

  def __init__(self, url: str):
    from google.cloud import storage  # optional heavy dependency (0.6 s): gs:// workdirs only
    from google.api_core import exceptions  # the same: gs:// workdirs only
    bucket, _, name = url[len('gs://'):].partition('/')
    self._blob_name, self._exceptions = name, exceptions
    self._bucket = storage.Client().bucket(bucket)

  def read(self):
    blob = self._bucket.get_blob(self._blob_name)
    if blob is None:
      return None, 0
    try:
      data = blob.download_as_bytes(if_generation_match=blob.generation)
    except (self._exceptions.PreconditionFailed, self._exceptions.NotFound):
      return self.read()  # changed between the two requests: read again
    try:
      return json.loads(data), int(blob.generation)
    except ValueError:
      return {}, int(blob.generation)

  def write(self, record: dict, if_generation: int) -> int:
    blob = self._bucket.blob(self._blob_name)
    try:
      blob.upload_from_string(json.dumps(record), content_type='application/json',
                              if_generation_match=if_generation)
    except self._exceptions.PreconditionFailed:
      raise _Conflict() from None
    return int(blob.generation)

  def delete(self, if_generation: int) -> None:
    try:
      self._bucket.blob(self._blob_name).delete(if_generation_match=if_generation)
    except (self._exceptions.PreconditionFailed, self._exceptions.NotFound):
      pass


def _end_process(error: LeaseLost) -> None:
  """Another trainer owns the workdir now: this one stops at once (exit 1), writing nothing."""
  sys.stderr.write(f'error: {error}\n')
  sys.stderr.flush()
  os._exit(1)


def _utc(t: float) -> str:
  return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S')


class Lease:
  """The workdir's lease for this process: `acquire()`, renewed by a thread, `release()`."""

  def __init__(self, workdir: str, *, ttl_s: float = DEFAULT_TTL_S, clock=time.time,
               host: str | None = None, pid: int | None = None):
    self.workdir = paths.resolve(workdir)
    self.path = paths.join(self.workdir, LEASE_NAME)
    self.ttl_s, self._clock = float(ttl_s), clock
    self.host, self.pid = host or socket.gethostname(), pid or os.getpid()
    self._store = _GcsStore(self.path) if self.path.startswith('gs://') else _LocalStore(self.path)
    self._generation = None
    self._since = None
    self._stop = threading.Event()
    self._thread = None
    self.lost: BaseException | None = None
    self.on_lost = _end_process

  def _record(self) -> dict:
    now = self._clock()
    return {'host': self.host, 'pid': self.pid, 'since': self._since or now, 'renewed': now,
            'ttl_s': self.ttl_s}

  def _stale(self, record: dict) -> str | None:
    """Why the holder of `record` no longer counts, or None while it is live."""
    if not record:
      return 'the lease file is unreadable'
    age = self._clock() - float(record.get('renewed', 0))
    if age > float(record.get('ttl_s', self.ttl_s)):
      return f'it was last renewed {age:.0f} s ago'
    if record.get('host') == self.host and not _alive(int(record.get('pid', 0))):
      return f'process {record.get("pid")} on this host is gone'
    return None

  def _refusal(self, record: dict) -> WorkdirBusy:
    age = self._clock() - float(record.get('renewed', 0))
    return WorkdirBusy(
        f'workdir {self.workdir} is in use by another trainer (host {record.get("host")}, pid '
        f'{record.get("pid")}, since {_utc(float(record.get("since", 0)))} UTC, lease renewed '
        f'{age:.0f} s ago): wait for it to end or stop it, or pass another --workdir (a lease '
        f'not renewed for {record.get("ttl_s", self.ttl_s):.0f} s is taken over).')

  def acquire(self) -> None:
    """Takes the lease, or raises WorkdirBusy naming the live holder."""
    paths.makedirs(self.workdir)
    for _ in range(3):
      record, generation = self._store.read()
      if record is not None:
        why = self._stale(record)
        if why is None:
          raise self._refusal(record)
        log.warning('taking over the lease of %s from host %s pid %s: %s.', self.workdir,
                    record.get('host'), record.get('pid'), why)
      self._since = self._clock()
      try:
        self._generation = self._store.write(self._record(), generation)
        return
      except _Conflict:
        continue  # another trainer wrote it first: look again
    record, _ = self._store.read()
    raise self._refusal(record or {})

  def renew(self) -> None:
    """Rewrites the record with a new time; LeaseLost when another trainer holds it now."""
    try:
      self._generation = self._store.write(self._record(), self._generation)
    except _Conflict:
      record, _ = self._store.read()
      who = f'host {record.get("host")}, pid {record.get("pid")}' if record else 'nobody'
      raise LeaseLost(f'the lease of workdir {self.workdir} was taken over ({who} holds it '
                      'now), so this trainer stops writing there: run one trainer per '
                      'workdir.', path=self.path) from None

  def _renew_loop(self) -> None:
    while not self._stop.wait(self.ttl_s / 4):
      try:
        self.renew()
      except LeaseLost as e:
        self.lost = e
        self.on_lost(e)
        return
      except Exception as e:  # noqa: BLE001 - a transient storage error: try again later
        log.warning('could not renew the lease of %s (%s: %s); trying again in %.0f s.',
                    self.workdir, type(e).__name__, e, self.ttl_s / 4)

  def start_renewing(self) -> None:
    self._thread = threading.Thread(target=self._renew_loop, name='mmjax-lease', daemon=True)
    self._thread.start()

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
    if self._generation is not None and self.lost is None:
      try:
        self._store.delete(self._generation)
      except Exception as e:  # noqa: BLE001 - the next trainer takes a stale lease over
        log.warning('could not release the lease of %s: %s', self.workdir, e)
      self._generation = None


@contextlib.contextmanager
def hold(workdir: str, *, ttl_s: float = DEFAULT_TTL_S, is_holder: bool = True, agree=None):
  """Holds the workdir's lease for the block (process 0 holds it for the job: `is_holder`).
  `agree(flag) -> bool` tells every process whether some process was refused (a collective),
  so all of them raise WorkdirBusy together before anything is written."""
  lease, refused = None, None
  if is_holder:
    lease = Lease(workdir, ttl_s=ttl_s)
    try:
      lease.acquire()
    except WorkdirBusy as e:
      refused, lease = e, None
  if agree is not None and agree(refused is not None) and refused is None:
    if lease is not None:
      lease.release()
    raise WorkdirBusy(f'workdir {paths.resolve(workdir)} is in use by another trainer (process '
                      '0 names it): wait for it to end, or pass another --workdir.')
  if refused is not None:
    raise refused
  if lease is not None:
    lease.start_renewing()
  try:
    yield lease
  finally:
    if lease is not None:
      lease.release()
