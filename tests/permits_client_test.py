#!/usr/bin/env python3
"""examples/permits_client.py against a real tenancyd: 6 workers share a
tenant's llm/student permits (2 at once) and never hold more than 2, as the
client saw them and as the server's metrics say, polled all along; a permit a
worker abandons is released when its lease ends; afterwards nothing is held
and 2 permits can be taken at once.

Standard library only:
  tests/permits_client_test.py --tenancyd build/server/tenancyd \\
      --client examples/permits_client.py
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ADMIN_KEY = "permits-test-admin-key"
TENANT_KEY = "tk_permits_client_test_NOT_A_SECRET"
TENANTS_FILE = {
    "tenants": [{"id": "pool", "api_key": TENANT_KEY}],
    "defaults": {"limits": {"llm": 30, "llm/student": 2}},
    "reload_on_change": False,
}


def start_server(binary, data_dir, config, log):
    env = dict(os.environ, TENANCY_ADMIN_KEY=ADMIN_KEY)
    proc = subprocess.Popen(
        [binary, "--data-dir", data_dir, "--listen", "127.0.0.1:0", "--threads", "16",
         "--config", config],
        stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    line = proc.stdout.readline().strip()
    prefix = "tenancyd listening on 127.0.0.1:"
    if not line.startswith(prefix):
        proc.kill()
        raise SystemExit(f"tenancyd did not start: {line!r}")
    return proc, int(line[len(prefix):])


def http(method, url, headers, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def gauge(metrics, name, cls):
    pattern = re.compile(
        r'^' + name + r'\{tenant="pool",class="' + re.escape(cls) + r'"\} (\S+)$', re.M)
    m = pattern.search(metrics)
    return None if m is None else float(m.group(1))


class MetricsPoller(threading.Thread):
    """Reads the server's in-use gauges for llm/student until stopped."""

    def __init__(self, base):
        super().__init__(daemon=True)
        self.base = base
        self.stop = threading.Event()
        self.max_permits = self.max_limiter = 0.0
        self.samples = 0

    def run(self):
        while not self.stop.is_set():
            status, text = http("GET", self.base + "/metrics", {"X-Admin-Key": ADMIN_KEY})
            if status == 200:
                self.samples += 1
                self.max_permits = max(self.max_permits,
                                       gauge(text, "tenancy_permits_in_use", "llm/student") or 0)
                self.max_limiter = max(self.max_limiter,
                                       gauge(text, "tenancy_limiter_in_use", "llm/student") or 0)
            time.sleep(0.005)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tenancyd", required=True)
    p.add_argument("--client", required=True)
    args = p.parse_args()

    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "tenants.json")
        with open(config, "w") as f:
            json.dump(TENANTS_FILE, f)
        log_path = os.path.join(tmp, "tenancyd.log")
        with open(log_path, "w") as log:
            proc, port = start_server(args.tenancyd, os.path.join(tmp, "data"), config, log)
        base = f"http://127.0.0.1:{port}"
        try:
            poller = MetricsPoller(base)
            poller.start()
            lease_s = 1.0
            run = subprocess.run(
                [sys.executable, args.client, "--url", base, "--key", TENANT_KEY,
                 "--workers", "6", "--calls", "3", "--work-s", "0.6", "--lease-s", str(lease_s),
                 "--abandon", "1", "--max-retry-sleep-s", "0.2"],
                capture_output=True, text=True, timeout=240)
            poller.stop.set()
            poller.join()
            print(run.stdout, end="")
            print(run.stderr, end="", file=sys.stderr)
            check(run.returncode == 0, f"client exit status {run.returncode}")
            summary = json.loads(run.stdout.strip().splitlines()[-1])
            check(summary["calls_done"] == 18, f"calls_done {summary['calls_done']} != 18")
            check(summary["errors"] == 0, f"client errors: {summary['error_samples']}")
            check(1 <= summary["max_held"] <= 2, f"client held {summary['max_held']} at once")
            check(summary["renewals"] >= 1, "no lease was renewed")
            check(summary["abandoned"] == 1, "no permit was abandoned")
            print(f"server samples {poller.samples}: max tenancy_permits_in_use "
                  f"{poller.max_permits}, max tenancy_limiter_in_use {poller.max_limiter}")
            check(poller.samples > 0, "no /metrics sample")
            check(poller.max_permits <= 2, f"server saw {poller.max_permits} permits at once")
            check(poller.max_limiter <= 2, f"limiter saw {poller.max_limiter} at once")
            check(poller.max_permits >= 1, "the server never saw a permit held")

            # Nothing leaked: once the abandoned lease is over, none is held...
            deadline = time.monotonic() + lease_s + 10
            in_use = None
            while time.monotonic() < deadline:
                _, text = http("GET", base + "/metrics", {"X-Admin-Key": ADMIN_KEY})
                in_use = (gauge(text, "tenancy_permits_in_use", "llm/student"),
                          gauge(text, "tenancy_limiter_in_use", "llm/student"))
                if in_use == (0.0, 0.0):
                    break
                time.sleep(0.02)
            check(in_use == (0.0, 0.0), f"still in use after the leases: {in_use}")
            check((gauge(text, "tenancy_permits_expired_total", "llm/student") or 0) >= 1,
                  "the abandoned permit did not expire")
            # ...and both permits can be taken without waiting.
            auth = {"Authorization": "Bearer " + TENANT_KEY, "Content-Type": "application/json"}
            for i in range(2):
                status, body = http("POST", base + "/v1/permits", auth,
                                    {"class": "llm/student", "lease_s": 5, "wait_s": 0})
                check(status == 201, f"take {i} after the run: {status} {body}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            if failures:
                with open(log_path) as log:
                    sys.stderr.write(log.read()[-4000:])

    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
