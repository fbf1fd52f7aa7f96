#!/usr/bin/env python3
"""Runs one command as N cooperating JAX processes on this machine, each with its own CPU devices.

The way to try multi-host on a laptop or a CI box: every process gets the coordinator's address,
the process count and its id (SEGJAX_* variables, read by segjax.engine.parallel.initialize), and its own
emulated CPU devices. Output lines are prefixed with the process id.

    python launch/local.py --processes=2 --devices_per_process=4 -- \\
        python -m segjax.main --config=configs/semantic.py --workdir=/tmp/multi

If one process fails, the others are stopped and its exit status is returned.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time


def reserve_port():
  """A socket that holds a free port for the coordinator until the launch ends.

  Closing it first (bind port 0, read, close) would let another program take the port before
  process 0 binds it. Bound, never listening, with SO_REUSEPORT, it keeps programs without
  SO_REUSEPORT off the port (their bind fails, and port 0 never hands it out) while the
  coordinator's gRPC server, which sets SO_REUSEPORT on Linux, still binds and listens there. Like the coordinator, it binds the
  IPv4 and IPv6 wildcard ([::], dual-stack), so no address of this host can take the port either.
  """
  try:
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    address = ("::", 0)
  except OSError:  # no IPv6: gRPC falls back to 0.0.0.0 as well
    s = socket.socket()
    address = ("0.0.0.0", 0)
  s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
  s.bind(address)
  return s


def process_env(base, process_id, num_processes, devices, port):
  """The environment of process `process_id`: coordinator, ids, and `devices` CPU devices."""
  env = dict(base)
  xla = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
  env.update(
      SEGJAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
      SEGJAX_NUM_PROCESSES=str(num_processes),
      SEGJAX_PROCESS_ID=str(process_id),
      JAX_PLATFORMS="cpu",
      XLA_FLAGS=f"{xla} --xla_force_host_platform_device_count={devices}".strip(),
  )
  return env


def _relay(process_id, stream, out):
  for line in iter(stream.readline, b""):
    out.write(f"[{process_id}] {line.decode(errors='replace')}")
    out.flush()


def launch(command, num_processes, devices, port=None, timeout=None):
  """Starts the processes, relays their output, and returns the first non-zero status (or 0)."""
  if port:  # an explicit port is the user's to keep free
    return _run(command, num_processes, devices, port, timeout)
  with reserve_port() as reservation:  # held until every process has ended
    return _run(command, num_processes, devices, reservation.getsockname()[1], timeout)


def _run(command, num_processes, devices, port, timeout):
  procs, relays = [], []
  for i in range(num_processes):
    p = subprocess.Popen(command, env=process_env(os.environ, i, num_processes, devices, port),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t = threading.Thread(target=_relay, args=(i, p.stdout, sys.stdout), daemon=True)
    t.start()
    procs.append(p)
    relays.append(t)
  deadline = None if timeout is None else time.monotonic() + timeout
  status = 0
  while True:
    codes = [p.poll() for p in procs]  # every process, every time: any() would stop at the first
    if None not in codes:
      break
    failed = [c for c in codes if c not in (None, 0)]
    late = deadline is not None and time.monotonic() > deadline
    if failed or late:
      status = failed[0] if failed else 124
      for p in procs:
        if p.poll() is None:
          p.terminate()
      break
    time.sleep(0.2)
  for p in procs:
    try:
      p.wait(timeout=30)
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()
  for t in relays:
    t.join(timeout=5)
  return status or next((p.returncode for p in procs if p.returncode), 0)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--processes", type=int, default=2, help="number of processes")
  parser.add_argument("--devices_per_process", type=int, default=4, help="emulated CPU devices each")
  parser.add_argument("--port", type=int, default=0, help="coordinator port (default: a free one)")
  parser.add_argument("--timeout", type=float, default=None, help="seconds before all are stopped")
  parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
  args = parser.parse_args()
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("give the command to run after --, e.g. -- python -m segjax.main --config=... --workdir=...")
  if args.processes < 1 or args.devices_per_process < 1:
    parser.error("--processes and --devices_per_process must be at least 1")
  sys.exit(launch(command, args.processes, args.devices_per_process, args.port or None, args.timeout))


if __name__ == "__main__":
  main()
