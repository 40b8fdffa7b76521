"""Launchers: the GKE JobSet and Dockerfile render and parse; the TPU launcher starts a detached,
supervised run that survives its ssh session and restarts after a failure; SLURM requeues.

gcloud, srun and scontrol are stand-ins (shell scripts on PATH) that run the remote command here
or record what they were asked to do; the trainer is a stand-in script too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tools import gke_jobset

ROOT = Path(__file__).resolve().parents[1]


def _wait(predicate, timeout=60.0, what=''):
  deadline = time.monotonic() + timeout
  while not predicate():
    assert time.monotonic() < deadline, f'timed out waiting for {what}'
    time.sleep(0.1)


@pytest.mark.parametrize('tpu,slices,hosts,chips,shape', [
    ('v5p-64', 2, 8, 4, '2x4x4'), ('v5e-8', 1, 1, 8, '2x4'), ('v6e-16', 1, 4, 4, '4x4')])
def test_jobset_renders_to_a_manifest_with_one_pod_per_host(tpu, slices, hosts, chips, shape):
  text = gke_jobset.render('imp', 'gcr.io/p/mmjax:1', tpu,
                           ['--config=configs/imp_base.py', '--workdir=gs://b/r x'], slices)
  doc = yaml.safe_load(text)
  assert (doc['apiVersion'], doc['kind']) == ('jobset.x-k8s.io/v1alpha2', 'JobSet')
  job = doc['spec']['replicatedJobs'][0]
  assert job['replicas'] == slices
  assert job['template']['spec']['parallelism'] == job['template']['spec']['completions'] == hosts
  pod = job['template']['spec']['template']['spec']
  assert pod['nodeSelector']['cloud.google.com/gke-tpu-topology'] == shape
  container = pod['containers'][0]
  assert container['command'] == ['python', '-m', 'mmjax.train']
  assert container['args'] == ['--config=configs/imp_base.py', '--workdir=gs://b/r x']
  assert container['resources']['limits']['google.com/tpu'] == chips
  assert {'name': 'MMJAX_DISTRIBUTED', 'value': 'auto'} in container['env']
  assert doc['spec']['failurePolicy']['maxRestarts'] >= 1
  # Exit code 2 (the user's input) fails the JobSet; every other failure restarts it.
  rule = job['template']['spec']['podFailurePolicy']['rules'][0]
  assert rule['action'] == 'FailJob' and rule['onExitCodes']['values'] == [2]
  assert rule['onExitCodes']['containerName'] == container['name']
  assert doc['spec']['failurePolicy']['rules'] == [
      {'action': 'FailJobSet', 'onJobFailureReasons': ['PodFailurePolicy']}]


def test_jobset_tool_rejects_an_unknown_slice_in_one_sentence():
  proc = subprocess.run([sys.executable, '-m', 'tools.gke_jobset', '--name=a', '--image=i',
                         '--tpu=v9-8', '--', '--config=c'], cwd=ROOT, capture_output=True,
                        text=True)
  assert proc.returncode == 2 and proc.stdout == ''
  assert proc.stderr.startswith("error: Unknown TPU topology 'v9-8'")


def test_dockerfile_installs_the_requirements_and_copies_what_exists():
  lines = [l.strip() for l in (ROOT / 'launch' / 'Dockerfile').read_text().splitlines()
           if l.strip() and not l.startswith('#')]
  instructions = [l.split()[0] for l in lines]
  assert instructions[0] == 'FROM' and 'python:3.11' in lines[0]
  for line in lines:
    if line.startswith('COPY'):
      assert (ROOT / line.split()[1]).exists(), line
  assert any('pip install -r requirements.txt' in l for l in lines)
  assert lines[-1] == 'ENTRYPOINT ["python", "-m", "mmjax.train"]'


FAKE_GCLOUD = '''#!/usr/bin/env bash
# gcloud stand-in: `compute tpus tpu-vm ssh NAME --zone=Z --worker=all --command=CMD` runs CMD
# here like ssh does, in its own session, then hangs up that session (a dropped connection).
echo "$*" >> "$FAKE_GCLOUD_LOG"
for a in "$@"; do case "$a" in --command=*) cmd="${a#--command=}" ;; esac; done
setsid bash -c "$cmd" &
leader=$!
wait "$leader"
kill -HUP -- "-$leader" 2>/dev/null || true
'''

FAKE_TRAINER = '''#!/usr/bin/env bash
# `.venv/bin/python -m mmjax.train ARGS` stand-in: fails (3) on its first run, then trains
# until SIGTERM, when it "checkpoints" and exits 0.
n=$(($(cat "$HOME/attempts" 2>/dev/null || echo 0) + 1)); echo $n > "$HOME/attempts"
echo "trainer attempt $n: $* MMJAX_DISTRIBUTED=$MMJAX_DISTRIBUTED"
((n == 1)) && exit 3
trap 'echo "checkpointed at SIGTERM"; exit 0' TERM
while :; do sleep 0.1; done
'''


def _fake_worker(tmp_path: Path) -> dict:
  """A HOME with ~/mmjax (this checkout's launch/ and a stand-in trainer) and a gcloud on PATH."""
  home, bin_dir = tmp_path / 'home', tmp_path / 'bin'
  (home / 'mmjax' / '.venv' / 'bin').mkdir(parents=True)
  bin_dir.mkdir()
  os.symlink(ROOT / 'launch', home / 'mmjax' / 'launch')
  for path, text in ((home / 'mmjax' / '.venv' / 'bin' / 'python', FAKE_TRAINER),
                     (bin_dir / 'gcloud', FAKE_GCLOUD)):
    path.write_text(text)
    path.chmod(0o755)
  return dict(os.environ, HOME=str(home), PATH=f'{bin_dir}:{os.environ["PATH"]}',
              FAKE_GCLOUD_LOG=str(tmp_path / 'gcloud.log'), MMJAX_RESTART_DELAY='0')


def test_tpu_launcher_runs_detached_logs_per_host_restarts_and_stops(tmp_path):
  env = _fake_worker(tmp_path)
  home = Path(env['HOME'])
  log = home / 'mmjax' / 'logs' / f'train-{socket.gethostname()}.log'
  launch = [str(ROOT / 'launch' / 'tpu_pod.sh')]
  start = time.monotonic()
  proc = subprocess.run(launch + ['train', 'pod', 'zone', '--', '--config=c.py', '--workdir=gs://b/r'],
                        env=env, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  assert time.monotonic() - start < 30                  # returned; the run goes on without it
  assert 'compute tpus tpu-vm ssh pod --zone=zone --worker=all' in (tmp_path / 'gcloud.log').read_text()
  # The session was hung up, yet the supervisor restarted the failed trainer and it runs on.
  _wait(lambda: log.exists() and 'trainer attempt 2' in log.read_text(), what='the restart')
  text = log.read_text()
  assert 'trainer attempt 1: -m mmjax.train --config=c.py --workdir=gs://b/r MMJAX_DISTRIBUTED=auto' in text
  assert 'exit status 3' in text and 'starting (restart 1)' in text
  pid = int(log.with_suffix('.pid').read_text())
  os.kill(pid, 0)                                       # the supervisor is alive
  proc = subprocess.run(launch + ['stop', 'pod', 'zone'], env=env, capture_output=True,
                        text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  _wait(lambda: 'exit status 0' in log.read_text(), what='the checkpoint on stop')
  assert 'checkpointed at SIGTERM' in log.read_text()
  _wait(lambda: not Path(f'/proc/{pid}').exists() or
        'Z' in Path(f'/proc/{pid}/stat').read_text().split()[2], what='the supervisor to exit')


def test_supervisor_does_not_restart_a_user_error(tmp_path):
  log = tmp_path / 'logs' / 'train.log'
  proc = subprocess.run([str(ROOT / 'launch' / 'supervise.sh'), str(log), str(tmp_path / 'STOP'),
                         '--', 'bash', '-c', 'echo bad config; exit 2'], capture_output=True,
                        text=True, timeout=60, env=dict(os.environ, MMJAX_RESTART_DELAY='0'))
  assert proc.returncode == 2
  assert log.read_text().splitlines().count('bad config') == 1 and 'restart 1' not in log.read_text()


FAKE_SRUN = '''#!/usr/bin/env bash
trap 'echo "srun: TERM, checkpointing" >> "$RECORD"; exit 0' TERM
echo "srun $*" >> "$RECORD"
while :; do sleep 0.1; done
'''


def test_slurm_script_checkpoints_and_requeues_before_the_time_limit(tmp_path):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  for name, text in (('srun', FAKE_SRUN), ('scontrol', '#!/usr/bin/env bash\necho "scontrol $*" >> "$RECORD"\n')):
    (bin_dir / name).write_text(text)
    (bin_dir / name).chmod(0o755)
  record = tmp_path / 'record'
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', RECORD=str(record),
             SLURM_JOB_ID='4242')
  job = subprocess.Popen(['bash', str(ROOT / 'launch' / 'slurm_gpu.sbatch'), '--config=c.py',
                          '--workdir=/shared/r'], env=env, stderr=subprocess.PIPE, text=True)
  _wait(lambda: record.exists() and 'srun' in record.read_text(), what='srun')
  job.send_signal(signal.SIGUSR1)                       # what --signal=B:USR1@300 sends
  _, err = job.communicate(timeout=60)
  assert job.returncode == 0, err
  lines = record.read_text().splitlines()
  assert lines == ['srun --kill-on-bad-exit=1 python -m mmjax.train --config=c.py --workdir=/shared/r',
                   'srun: TERM, checkpointing', 'scontrol requeue 4242']
  assert 'requeueing' in err
