"""Launch scripts: the TPU VM and SLURM dry runs print the commands they would run; the local
launcher gives each process its coordinates and stops the rest when one fails."""
import os
import shlex
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "launch")
sys.path.insert(0, LAUNCH)
import local  # pylint: disable=g-import-not-at-top,wrong-import-position

ARGS = ["--config=configs/semantic.py", "--workdir=/shared/run 1"]


def _script(name, *args):
  return subprocess.run(["bash", os.path.join(LAUNCH, name), *args], capture_output=True, text=True,
                        timeout=60, check=False)


def test_tpu_vm_dry_run_prints_create_copy_install_and_run_on_all_workers():
  result = _script("tpu_vm.sh", "--dry-run", "--name=pod", "--zone=us-west4-a",
                   "--accelerator=v5litepod-16", "--", *ARGS)
  assert result.returncode == 0, result.stderr
  commands = [shlex.split(l) for l in result.stdout.splitlines() if not l.startswith("#")]
  where = ["--zone=us-west4-a"]
  assert commands[0] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "pod", *where,
                         "--accelerator-type=v5litepod-16", "--version=tpu-ubuntu2204-base"]
  assert commands[1][:3] == ["git", "-C", ROOT] and commands[1][-1] == "HEAD"
  assert commands[2][4:6] == ["scp", commands[1][-2].split("=", 1)[1]] and "--worker=all" in commands[2]
  assert "pip install" in commands[3][-1] and "jax[tpu]" in commands[3][-1]
  *ssh, remote = commands[4]
  assert ssh == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod", *where, "--worker=all"]
  assert remote.startswith("--command=")
  assert shlex.split(remote[len("--command="):]) == [
      "cd", "~/segjax", "&&", "python3", "-m", "segjax.main", "--distributed", *ARGS]


def test_tpu_vm_reuse_skips_create_and_install():
  result = _script("tpu_vm.sh", "--dry-run", "--name=pod", "--zone=z", "--no-create", "--no-install",
                   "--", *ARGS)
  assert result.returncode == 0, result.stderr
  assert len(result.stdout.splitlines()) == 1 and " ssh pod " in result.stdout


def test_slurm_dry_run_prints_one_task_per_gpu_and_the_srun_line():
  result = _script("slurm.sh", "--dry-run", "--nodes=2", "--gpus_per_node=4", "--partition=gpu",
                   "--", *ARGS)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert "sbatch" in lines
  for directive in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu",
                    "--signal=TERM@120"):  # SIGTERM before the time limit: a resumable stop
    assert f"#SBATCH {directive}" in lines
  assert f"cd {ROOT}" in lines
  srun = shlex.split(lines[-1])
  assert srun == ["srun", "--kill-on-bad-exit=1", "python3", "-m", "segjax.main", "--distributed", *ARGS]


@pytest.mark.parametrize("script,args,message", [
    ("tpu_vm.sh", ["--dry-run", "--zone=z", "--", "--config=c"], "--name and --zone are required"),
    ("tpu_vm.sh", ["--dry-run", "--name=n", "--zone=z"], "give segjax's arguments after --"),
    ("tpu_vm.sh", ["--dry-run", "--name=n", "--zone=z", "--", "--config=c"], "--accelerator is required"),
    ("slurm.sh", ["--dry-run", "--nodes=two", "--", "--config=c"], "'two' is not a positive whole number"),
    ("slurm.sh", ["--dry-run", "--bogus", "--", "--config=c"], "unknown option '--bogus'"),
])
def test_scripts_reject_bad_usage_with_a_sentence(script, args, message):
  result = _script(script, *args)
  assert result.returncode == 2 and message in result.stderr


def test_local_launcher_gives_each_process_its_coordinates():
  env = local.process_env({"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_other=1"},
                          1, 3, 4, 1234)
  assert env["SEGJAX_COORDINATOR_ADDRESS"] == "127.0.0.1:1234"
  assert (env["SEGJAX_NUM_PROCESSES"], env["SEGJAX_PROCESS_ID"]) == ("3", "1")
  assert env["XLA_FLAGS"].split() == ["--xla_other=1", "--xla_force_host_platform_device_count=4"]


def test_local_launcher_stops_the_others_when_one_fails():
  code = ("import os, sys, time\n"
          "if os.environ['SEGJAX_PROCESS_ID'] == '1': sys.exit(3)\n"
          "time.sleep(120)\n")
  start = time.monotonic()
  result = subprocess.run([sys.executable, os.path.join(LAUNCH, "local.py"), "--processes=2", "--",
                           sys.executable, "-c", code], capture_output=True, text=True, timeout=100,
                          check=False)
  assert result.returncode == 3
  assert time.monotonic() - start < 60


def test_local_launcher_holds_the_coordinator_port_while_the_processes_run():
  # Another program taking the port before process 0's coordinator binds it would crash the run.
  code = ("import errno, os, socket\n"
          "port = int(os.environ['SEGJAX_COORDINATOR_ADDRESS'].rsplit(':', 1)[1])\n"
          "try:\n"
          "  socket.socket().bind(('127.0.0.1', port))\n"
          "  print('bound')\n"
          "except OSError as e:\n"
          "  print(errno.errorcode[e.errno])\n")
  result = subprocess.run([sys.executable, os.path.join(LAUNCH, "local.py"), "--processes=2", "--",
                           sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  assert sorted(result.stdout.splitlines()) == ["[0] EADDRINUSE", "[1] EADDRINUSE"]


def test_local_launcher_coordinator_starts_on_the_held_port():
  # The hold must let JAX's coordinator (gRPC, SO_REUSEPORT) bind the port, or process 0 crashes.
  code = ("from segjax.engine import parallel\n"
          "parallel.initialize()\n"
          "import jax\n"
          "print('processes', jax.process_count())\n")
  result = subprocess.run([sys.executable, os.path.join(LAUNCH, "local.py"), "--processes=2",
                           "--devices_per_process=1", "--timeout=60", "--", sys.executable, "-c", code],
                          cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  assert sorted(l for l in result.stdout.splitlines() if "processes" in l) == [
      "[0] processes 2", "[1] processes 2"]
