#!/usr/bin/env python3
"""A worker pool that takes a tenancyd permit around every model call.

Each of --workers threads makes --calls fake model calls (a sleep of
--work-s). Before each call it takes a permit of --class (llm/student by
default) with POST /v1/permits, waiting up to --wait-s for one and coming back
after Retry-After when the server says 429; while the call runs it renews the
lease whenever half of it has passed; in `finally` it releases the permit. So
however many workers run, the tenant's limit for the class (tenant tier, then
global) bounds how many call the model at once.

--abandon N makes the first N calls skip their release, as a worker that
crashes would: the server releases those permits when their lease ends.

Standard library only (urllib, threading, json). Prints one JSON summary:
  calls_done     calls that ran with a permit
  max_held       most permits this client held at once (from the grants it
                 saw to the releases it sent; an abandoned permit counts until
                 its lease ends)
  renewals       leases renewed
  retries        429 answers that were waited out
  abandoned      permits left to expire
  errors         anything else, with samples in error_samples

  examples/permits_client.py --url http://127.0.0.1:8080 \\
      --key tk_sample_will_NOT_A_SECRET_replace_me --workers 6 --calls 4
"""

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request


class PermitClient:
    """POST /v1/permits, POST /v1/permits/{permit}/renew, DELETE /v1/permits/{permit}."""

    def __init__(self, url, key, timeout):
        self.url = url.rstrip("/")
        self.headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
        self.timeout = timeout

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else {}, resp.headers
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                payload = {"raw": raw.decode(errors="replace")}
            return e.code, payload, e.headers

    def take(self, cls, lease_s, wait_s):
        return self._call("POST", "/v1/permits",
                          {"class": cls, "lease_s": lease_s, "wait_s": wait_s})

    def renew(self, permit, lease_s):
        return self._call("POST", f"/v1/permits/{permit}/renew", {"lease_s": lease_s})

    def release(self, permit):
        return self._call("DELETE", f"/v1/permits/{permit}")


class Stats:
    def __init__(self, abandon):
        self.lock = threading.Lock()
        self.intervals = []  # (granted, released) on time.monotonic()
        self.calls_done = self.renewals = self.retries = self.abandoned = self.errors = 0
        self.abandon_left = abandon
        self.error_samples = []

    def error(self, what):
        with self.lock:
            self.errors += 1
            if len(self.error_samples) < 10:
                self.error_samples.append(what)

    def should_abandon(self):
        with self.lock:
            if self.abandon_left > 0:
                self.abandon_left -= 1
                self.abandoned += 1
                return True
            return False

    def max_held(self):
        # Releases sort before grants at the same instant.
        events = sorted([(t0, 1) for t0, _ in self.intervals] +
                        [(t1, -1) for _, t1 in self.intervals], key=lambda e: (e[0], e[1]))
        held = best = 0
        for _, delta in events:
            held += delta
            best = max(best, held)
        return best


def take_permit(client, args, stats, give_up_at):
    """A permit, after as many 429s as it takes until give_up_at; None on error."""
    while time.monotonic() < give_up_at:
        status, body, headers = client.take(args.cls, args.lease_s, args.wait_s)
        if status == 201:
            return body["permit"]
        if status == 429:
            with stats.lock:
                stats.retries += 1
            time.sleep(min(float(headers.get("Retry-After", "1")), args.max_retry_sleep_s))
            continue
        stats.error(f"take: {status} {body}")
        return None
    stats.error("take: gave up")
    return None


def fake_model_call(client, args, stats, permit):
    """Sleeps --work-s, renewing the lease whenever half of it has passed."""
    end = time.monotonic() + args.work_s
    renewed_at = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= end:
            return True
        if now - renewed_at >= args.lease_s / 2:
            status, body, _ = client.renew(permit, args.lease_s)
            if status != 200:
                stats.error(f"renew: {status} {body}")
                return False
            renewed_at = time.monotonic()
            with stats.lock:
                stats.renewals += 1
        time.sleep(min(0.05, end - now))


def worker(client, args, stats):
    give_up_at = time.monotonic() + args.give_up_s
    for _ in range(args.calls):
        permit = take_permit(client, args, stats, give_up_at)
        if permit is None:
            return
        granted = time.monotonic()
        abandon = stats.should_abandon()
        released = None
        try:
            if fake_model_call(client, args, stats, permit):
                with stats.lock:
                    stats.calls_done += 1
        finally:
            if abandon:
                # As a crashed worker: the lease ends on the server.
                released = granted + args.lease_s
            else:
                released = time.monotonic()
                status, body, _ = client.release(permit)
                if status != 204:
                    stats.error(f"release: {status} {body}")
            with stats.lock:
                stats.intervals.append((granted, released))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="tenancyd, e.g. http://127.0.0.1:8080")
    p.add_argument("--key", required=True, help="the tenant's API key")
    p.add_argument("--class", dest="cls", default="llm/student", help="limit class")
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--calls", type=int, default=4, help="model calls per worker")
    p.add_argument("--work-s", type=float, default=0.2, help="length of one fake model call")
    p.add_argument("--lease-s", type=float, default=10)
    p.add_argument("--wait-s", type=float, default=20, help="wait for a permit (at most 20)")
    p.add_argument("--abandon", type=int, default=0,
                   help="leave this many permits unreleased, as crashed workers would")
    p.add_argument("--max-retry-sleep-s", type=float, default=1.0)
    p.add_argument("--give-up-s", type=float, default=120, help="per worker")
    args = p.parse_args()

    client = PermitClient(args.url, args.key, timeout=args.wait_s + 10)
    stats = Stats(args.abandon)
    threads = [threading.Thread(target=worker, args=(client, args, stats), daemon=True)
               for _ in range(args.workers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = {
        "workers": args.workers,
        "calls_done": stats.calls_done,
        "max_held": stats.max_held(),
        "renewals": stats.renewals,
        "retries": stats.retries,
        "abandoned": stats.abandoned,
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "seconds": round(time.monotonic() - started, 3),
    }
    print(json.dumps(summary))
    return 0 if stats.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
