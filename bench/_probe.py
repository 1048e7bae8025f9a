import subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from bench.common import dev8_server, wait_ready
N = int(sys.argv[1]) if len(sys.argv) > 1 else 40
with dev8_server() as (server, user):
    client = user.http()
    client.post("/environments", json={"name": "warm", "image": "dev8/base:latest"}).raise_for_status()
    wait_ready(client, "warm")
    pid = server.proc.pid
    spy = None if len(sys.argv) < 3 else subprocess.Popen([".venv/bin/py-spy", "record", "-p", str(pid), "-o", "/tmp/prof.txt", "-f", "raw", "-r", "200", "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    t0 = time.perf_counter()
    def one(i):
        c = user.http()
        c.post("/environments", json={"name": f"b{i}", "image": "dev8/base:latest"}).raise_for_status()
        wait_ready(c, f"b{i}")
        return time.perf_counter() - t0
    with ThreadPoolExecutor(N) as ex:
        times = sorted(ex.map(one, range(N)))
    print("ready at", [round(t, 2) for t in times])
    if spy: spy.send_signal(2); spy.wait(30)
