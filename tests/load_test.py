#!/usr/bin/env python3
"""Load test for tenancyd: N tenants x R requests/s for S seconds, mixed reads
and writes, over keep-alive connections. Fails (exit 1) on any error, on any
read that returns another tenant's value, or (unless --no-rate-check) when the
achieved rate is under 90% of the target.

Every tenant writes the same key names ("shared", "k0".."k49") with values
that carry its own id, and checks every value it reads back: a cross-tenant
read cannot go unnoticed.

Standard library only, so CI can run it anywhere:
  tests/load_test.py --tenancyd build/server/tenancyd
"""

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

ADMIN_KEY = "load-test-admin-key"


def start_server(binary, data_dir, threads, log):
    env = dict(os.environ, TENANCY_ADMIN_KEY=ADMIN_KEY)
    # stderr goes to a file: if the server dies, its last words are printed.
    proc = subprocess.Popen(
        [binary, "--data-dir", data_dir, "--listen", "127.0.0.1:0",
         "--threads", str(threads)],
        stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    line = proc.stdout.readline().strip()
    prefix = "tenancyd listening on 127.0.0.1:"
    if not line.startswith(prefix):
        proc.kill()
        raise SystemExit(f"tenancyd did not start: {line!r}")
    return proc, int(line[len(prefix):])


def request(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.read()


class TenantLoad(threading.Thread):
    def __init__(self, port, tenant, key, rps, seconds, start_at):
        super().__init__(daemon=True)
        self.port, self.tenant, self.key = port, tenant, key
        self.rps, self.seconds, self.start_at = rps, seconds, start_at
        self.sent = self.errors = self.cross = self.reads = self.writes = 0
        self.error_samples = []

    def check_value(self, value):
        # Values are "<tenant>:<seq>"; anything else is another tenant's data.
        if not value.startswith((self.tenant + ":").encode()):
            self.cross += 1
            self.error_samples.append(f"cross-tenant read: {value[:40]!r}")

    def run(self):
        rnd = random.Random(self.tenant)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        auth = {"Authorization": "Bearer " + self.key}
        written = set()
        interval = 1.0 / self.rps
        n = int(self.rps * self.seconds)
        while time.time() < self.start_at:
            time.sleep(0.001)
        t0 = time.monotonic()
        for i in range(n):
            # Pace: request i goes out at t0 + i * interval.
            delay = t0 + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            name = "shared" if i % 5 == 0 else f"k{rnd.randrange(50)}"
            try:
                if name not in written or rnd.random() < 0.4:
                    value = f"{self.tenant}:{i}".encode()
                    status, body = request(conn, "PUT", "/v1/kv/" + name, value, auth)
                    ok = status == 204
                    written.add(name)
                    self.writes += 1
                elif rnd.random() < 0.1:
                    status, body = request(conn, "GET", "/v1/kv?limit=20", None, auth)
                    ok = status == 200
                    if ok:
                        for item in json.loads(body)["items"]:
                            self.check_value(item["value"].encode())
                    self.reads += 1
                else:
                    status, body = request(conn, "GET", "/v1/kv/" + name, None, auth)
                    ok = status == 200
                    if ok:
                        self.check_value(body)
                    self.reads += 1
                if not ok:
                    self.errors += 1
                    self.error_samples.append(f"{name}: HTTP {status} {body[:100]!r}")
            except (OSError, http.client.HTTPException) as e:
                self.errors += 1
                self.error_samples.append(f"{name}: {e!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.sent += 1
        self.elapsed = time.monotonic() - t0
        conn.close()


def print_server_log(path):
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    print(f"--- last {min(len(lines), 40)} lines of tenancyd's log ---")
    for line in lines[-40:]:
        print(line)


def run_load(args, tmp, log):
    """Starts tenancyd, runs the load, reads /metrics, stops the server.
    Returns (loads, metrics text, exit code)."""
    proc, port = start_server(args.tenancyd, os.path.join(tmp, "data"),
                              args.threads, log)
    try:
        admin = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        keys = {}
        for t in range(args.tenants):
            tenant = f"load-{t}"
            status, body = request(
                admin, "POST", "/admin/tenants",
                json.dumps({"tenant_id": tenant, "quota_mb": 64}),
                {"X-Admin-Key": ADMIN_KEY, "Content-Type": "application/json"})
            if status != 201:
                raise SystemExit(f"create {tenant}: HTTP {status} {body!r}")
            keys[tenant] = json.loads(body)["api_key"]
        start_at = time.time() + 0.2
        loads = [TenantLoad(port, t, k, args.rps, args.seconds, start_at)
                 for t, k in keys.items()]
        for l in loads:
            l.start()
        for l in loads:
            l.join()
        admin.close()  # idle longer than the keep-alive timeout
        admin = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, metrics = request(admin, "GET", "/metrics", None,
                                  {"X-Admin-Key": ADMIN_KEY})
        admin.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "timeout"
        if code != 0:
            print(f"tenancyd exited with {code}")
    return loads, metrics, code


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenancyd", required=True)
    ap.add_argument("--tenants", type=int, default=10)
    ap.add_argument("--rps", type=float, default=100, help="per tenant")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--threads", type=int, default=8, help="server workers")
    ap.add_argument("--no-rate-check", action="store_true",
                    help="do not fail on a low rate (sanitizer builds)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="tenancy-load-") as tmp:
        log_path = os.path.join(tmp, "tenancyd.log")
        with open(log_path, "w") as log:
            try:
                loads, metrics, code = run_load(args, tmp, log)
            except BaseException:
                print_server_log(log_path)
                raise
        if code != 0:
            print_server_log(log_path)
    sent = sum(l.sent for l in loads)
    errors = sum(l.errors for l in loads)
    cross = sum(l.cross for l in loads)
    elapsed = max(l.elapsed for l in loads)
    rate = sent / elapsed
    target = args.tenants * args.rps
    print(f"tenants={args.tenants} target={target:.0f} req/s achieved={rate:.0f} req/s "
          f"requests={sent} reads={sum(l.reads for l in loads)} "
          f"writes={sum(l.writes for l in loads)} errors={errors} "
          f"cross_tenant_reads={cross} elapsed={elapsed:.1f}s exit={code}")
    for l in loads:
        for s in l.error_samples[:3]:
            print(f"  {l.tenant}: {s}")
    calls = 0
    for line in metrics.decode().splitlines():
        if line.startswith("tenancy_api_calls_total{"):
            calls += float(line.rsplit(" ", 1)[1])
    if calls != sent:
        print(f"FAIL: tenancy_api_calls_total={calls:.0f}, requests sent={sent}")
        return 1
    if errors or cross or code != 0:
        print("FAIL")
        return 1
    if not args.no_rate_check and rate < 0.9 * target:
        print(f"FAIL: rate {rate:.0f} under 90% of {target:.0f}")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
