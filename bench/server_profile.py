"""cProfile of a Predis server process (one store backend) under redis-benchmark SET at -P 16.

Starts ``python -m cProfile -m predis_server --store-backend BACKEND``, runs 200k then 400k SETs
(100-byte values, -r 100000, 50 clients), shuts it down and prints the functions by own time.
Used to compare the GPU and CPU backends on the H100 (bench/results/store/profile_*.txt).

    python bench/server_profile.py gpu|cpu
"""
from __future__ import annotations

import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
from servers import free_port, wait_ready


def main() -> int:
    backend = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    port = free_port()
    out = os.path.join(tempfile.mkdtemp(prefix="predis-profile-"), f"{backend}.prof")
    proc = subprocess.Popen([sys.executable, "-m", "cProfile", "-o", out, "-m", "predis_server", "--port", str(port),
                             "--store-backend", backend], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_ready(port, proc)
    for requests in (200_000, 400_000):
        result = subprocess.run(["timeout", "60", "redis-benchmark", "-p", str(port), "-q", "-c", "50", "-P", "16",
                                 "-n", str(requests), "-t", "set", "-r", "100000", "-d", "100"],
                                capture_output=True, text=True, check=False)
        lines = result.stdout.strip().splitlines()
        print(backend, lines[-1][-80:] if lines else result.stderr[-200:], flush=True)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
        time.sleep(0.5)
    proc.wait(30)
    pstats.Stats(out).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
