#!/usr/bin/env python3
"""The dashboard (GET /admin/ui) in headless Chromium, as an operator uses it.

Starts tenancyd on port 0 with three tenants (one under its quota's warning
fraction, one past it, one over its quota), opens the page in Chromium driven
through the DevTools protocol over --remote-debugging-pipe (Python's standard
library only: the pipe is two file descriptors, messages are JSON ended by a
NUL byte), and checks that:
  - a wrong key shows the clear message and loads nothing else;
  - the right key shows every tenant with its state and usage, the bars
    green, amber and red, and keeps the key in sessionStorage only;
  - a tenant's detail lists its API keys and effective limits;
  - create, a new key (shown once, with a copy button), enable and purge (only
    once the tenant's id is typed) do what they say on the server;
  - the page ran without a Content-Security-Policy violation or script error.
It saves a screenshot (--screenshot, under the build directory) as the test's
artifact. Exits 77 (ctest's SKIP_RETURN_CODE) when chromium is not installed.

usage: dashboard_browser_test.py --tenancyd PATH --screenshot FILE.png
"""

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ADMIN_KEY = "dashboard-test-admin-key"
SKIP = 77
DEADLINE_S = 25


class Failure(Exception):
    pass


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Tenancyd:
    def __init__(self, binary, workdir):
        env = dict(os.environ, TENANCY_ADMIN_KEY=ADMIN_KEY)
        self.log = open(os.path.join(workdir, "tenancyd.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "--data-dir", os.path.join(workdir, "data"), "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=self.log, env=env)
        line = self.proc.stdout.readline().decode()
        prefix = "tenancyd listening on "
        if not line.startswith(prefix):
            raise Failure("tenancyd did not start: %r" % line)
        self.base = "http://" + line[len(prefix):].strip()

    def call(self, method, path, body=None, key=None, raw=None):
        headers = {"X-Admin-Key": ADMIN_KEY} if key is None else {"Authorization": "Bearer " + key}
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                text = res.read()
                return res.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Browser:
    """Chromium with the DevTools protocol on fds 3 (commands) and 4 (events)."""

    def __init__(self, chromium, workdir):
        cmd_read, self.cmd_write = os.pipe()
        self.event_read, event_write = os.pipe()

        def child_fds():
            # Moved above 4 first, so that neither lands on the other.
            high_read = os.dup(cmd_read)
            high_write = os.dup(event_write)
            while high_read <= 4 or high_write <= 4:
                high_read, high_write = os.dup(high_read), os.dup(high_write)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--remote-debugging-pipe", "--window-size=1360,760",
             "--user-data-dir=" + os.path.join(workdir, "chromium"), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, pass_fds=(3, 4))
        os.close(cmd_read)
        os.close(event_write)
        self.buffer = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.cmd_write, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise Failure("%s: %s" % (method, reply["error"]))
                return reply.get("result", {})
            self.events.append(reply)

    def read(self):
        while b"\0" not in self.buffer:
            chunk = os.read(self.event_read, 1 << 16)
            if not chunk:
                raise Failure("chromium closed the DevTools pipe")
            self.buffer += chunk
        msg, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(msg)

    def open_page(self):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session = attached["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Log.enable")

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise Failure("script error in %r: %s" % (expression, result["exceptionDetails"]))
        return result["result"].get("value")

    def wait_for(self, expression, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return
            time.sleep(0.05)
        raise Failure("timed out waiting for " + what)

    def problems(self):
        """CSP violations, script errors and failed loads the page reported."""
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Log.entryAdded":
                entry = params.get("entry", {})
                # The wrong key's 401 is the one refusal the test asks for.
                if entry.get("level") == "error" and "status of 401" not in entry.get("text", ""):
                    found.append("%s %s" % (entry.get("text", ""), entry.get("url", "")))
            elif method == "Runtime.exceptionThrown":
                found.append(json.dumps(params.get("exceptionDetails", {}))[:300])
        return found

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except Failure:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.cmd_write)
        os.close(self.event_read)


def seed(server):
    """Three tenants: acme at 50 % of its 1 MiB quota, globex at 96 % (amber:
    past the 0.9 warning fraction), initech at 150 % (red: its quota was
    lowered under its data)."""
    keys = {}
    for tenant, quota in (("acme", 1), ("globex", 1), ("initech", 2)):
        status, created = server.call("POST", "/admin/tenants",
                                      {"tenant_id": tenant, "quota_mb": quota})
        if status != 201:
            raise Failure("create %s: %s %s" % (tenant, status, created))
        keys[tenant] = created["api_key"]
    for tenant, size in (("acme", 524288 - 1), ("globex", 1006633), ("initech", 1572864 - 1)):
        status, _ = server.call("PUT", "/v1/kv/k", key=keys[tenant], raw=b"v" * size)
        if status != 204:
            raise Failure("write to %s: %s" % (tenant, status))
    status, _ = server.call("PUT", "/admin/tenants/initech", {"quota_mb": 1, "limits": {"llm": 3}})
    if status != 200:
        raise Failure("lower initech's quota: %s" % status)


def check_page(browser, server, screenshot):
    browser.open_page()
    browser.send("Page.navigate", {"url": server.base + "/admin/ui"})
    browser.wait_for("document.readyState === 'complete' && "
                     "!document.getElementById('login').hidden", "the login form")

    # A wrong key: the message, and nothing else loads.
    browser.evaluate("document.getElementById('login-key').value = 'not-the-key';"
                     "document.getElementById('login-button').click(); true")
    browser.wait_for("!document.getElementById('login-error').hidden", "the wrong-key message")
    message = browser.evaluate("document.getElementById('login-error').textContent")
    if "Wrong admin key" not in message:
        raise Failure("wrong key message: %r" % message)
    if not browser.evaluate("getComputedStyle(document.getElementById('app')).display === 'none' && "
                            "document.querySelectorAll('#tenants tbody tr').length === 0 && "
                            "sessionStorage.length === 0"):
        raise Failure("a wrong key loaded the tenants, or was kept")

    # The right key: every tenant, with its state and usage.
    browser.evaluate("document.getElementById('login-key').value = %s;"
                     "document.getElementById('login-button').click(); true" % json.dumps(ADMIN_KEY))
    browser.wait_for("document.querySelectorAll('#tenants tbody tr').length === 3", "3 tenant rows")
    if not browser.evaluate("getComputedStyle(document.getElementById('login')).display === 'none'"
                            " && getComputedStyle(document.getElementById('app')).display !== 'none'"
                            " && getComputedStyle(document.getElementById('login-error')).display"
                            " === 'none'"):
        raise Failure("after the right key, the login form is still shown or the tenants are not")
    rows = browser.evaluate("""Array.from(document.querySelectorAll('#tenants tbody tr')).map(tr => ({
        id: tr.dataset.tenant,
        state: tr.children[1].textContent,
        usage: tr.querySelector('.usage-text').textContent,
        bar: tr.querySelector('.bar').className,
        width: tr.querySelector('.bar > span').style.width,
        keys: tr.children[3].textContent,
        apiKeys: tr.children[4].textContent,
        calls: tr.children[5].textContent,
        limits: tr.children[7].textContent}))""")
    by_id = {r["id"]: r for r in rows}
    # The percent shown is the API's usage over the quota, rounded down;
    # the bar green under the warning fraction, amber from it, red at 100 %.
    _, page = server.call("GET", "/admin/tenants")
    usage = {t["tenant_id"]: t["storage_used_bytes"] / (t["quota_mb"] * 1048576)
             for t in page["tenants"]}
    expected = {"acme": "bar ok", "globex": "bar warn", "initech": "bar full"}
    if sorted(by_id) != sorted(expected):
        raise Failure("tenant rows: %s" % rows)
    for tenant, bar in expected.items():
        r = by_id[tenant]
        percent = "(%d %%)" % int(usage[tenant] * 100)
        if r["state"] != "active" or percent not in r["usage"] or r["bar"] != bar:
            raise Failure("row of %s: %s (want %s, %s)" % (tenant, r, percent, bar))
        if r["keys"] != "1" or r["apiKeys"] != "1" or r["calls"] != "1":
            raise Failure("counts of %s: %s" % (tenant, r))
        width = float(r["width"].rstrip("%"))
        if abs(width - min(100.0, usage[tenant] * 100)) > 0.2:
            raise Failure("bar width of %s: %s" % (tenant, r))
    if "KiB / 1.0 MiB" not in by_id["acme"]["usage"]:
        raise Failure("usage text: %s" % rows)
    if "llm 3" not in by_id["initech"]["limits"]:
        raise Failure("limits of initech: %s" % by_id["initech"])
    stored = browser.evaluate("[sessionStorage.getItem('tenancy-admin-key'), localStorage.length]")
    if stored != [ADMIN_KEY, 0]:
        raise Failure("the key is not kept in sessionStorage only: %s" % stored)

    # The filter: an id prefix.
    browser.evaluate("{ const f = document.getElementById('filter'); f.value = 'glo';"
                     "f.dispatchEvent(new Event('input')); } true")
    browser.wait_for("document.querySelectorAll('#tenants tbody tr').length === 1 && "
                     "document.querySelector('#tenants tbody tr').dataset.tenant === 'globex'",
                     "the filtered row")
    browser.evaluate("{ const f = document.getElementById('filter'); f.value = '';"
                     "f.dispatchEvent(new Event('input')); } true")
    browser.wait_for("document.querySelectorAll('#tenants tbody tr').length === 3", "all rows again")

    # A tenant's detail: its keys (no secrets) and effective limits.
    browser.evaluate("document.querySelector('#tenants tbody tr[data-tenant=\"initech\"]').click(); true")
    browser.wait_for("!document.getElementById('detail').hidden && "
                     "document.querySelectorAll('#detail-keys tbody tr').length === 1",
                     "the detail of initech")
    detail = browser.evaluate("document.getElementById('detail').textContent")
    for text in ("initech", "requests/writes", "llm", '"storage_mb": 1'):
        if text not in detail:
            raise Failure("detail lacks %r: %s" % (text, detail[:500]))
    if re.search(r"tk_[0-9a-f]{16}_", detail):
        raise Failure("the detail shows a secret")

    # The refresh updates rows in place: the same <tr> elements after 5 s.
    browser.evaluate("window.__rowBefore = document.querySelector('#tenants tbody tr'); true")
    status, _ = server.call("DELETE", "/admin/tenants/acme")
    if status != 200:
        raise Failure("disable acme: %s" % status)
    browser.wait_for("document.querySelector('#tenants tbody tr[data-tenant=\"acme\"]')"
                     ".children[1].textContent === 'disabled'", "the refresh", timeout=12)
    if not browser.evaluate("window.__rowBefore === document.querySelector('#tenants tbody tr')"):
        raise Failure("the refresh replaced the rows instead of updating them")

    shot = browser.send("Page.captureScreenshot", {"format": "png"})
    with open(screenshot, "wb") as f:
        f.write(base64.b64decode(shot["data"]))

    check_actions(browser, server)

    problems = browser.problems()
    if problems:
        raise Failure("the page reported errors: %s" % problems)


def check_actions(browser, server):
    """Create, a new key (shown once, with a copy button), enable and purge
    (only once the id is typed), each checked against the server."""
    js = browser.evaluate
    js("document.getElementById('create').click(); true")
    browser.wait_for("document.getElementById('create-dialog').open", "the create dialog")
    js("document.getElementById('create-id').value = 'hooli';"
       "document.getElementById('create-quota').value = '5';"
       "document.getElementById('create-submit').click(); true")
    browser.wait_for("document.getElementById('secret-dialog').open && "
                     "/^tk_[0-9a-f]{16}_/.test(document.getElementById('secret-value').value)",
                     "the new tenant's key")
    secret = js("document.getElementById('secret-value').value")
    status, usage = server.call("GET", "/v1/usage", key=secret)
    if status != 200 or usage["tenant_id"] != "hooli" or usage["quota_mb"] != 5:
        raise Failure("the key shown does not work for hooli: %s %s" % (status, usage))
    js("document.getElementById('secret-copy').click(); true")
    browser.wait_for("!document.getElementById('secret-copied').hidden", "the copy")
    js("document.getElementById('secret-close').click(); true")
    if js("document.getElementById('secret-dialog').open || "
          "document.getElementById('secret-value').value !== ''"):
        raise Failure("the key stays shown after Done")
    browser.wait_for("document.querySelectorAll('#tenants tbody tr').length === 4 && "
                     "document.getElementById('detail-title').textContent === 'hooli'",
                     "hooli's row and detail")

    # A new key for hooli: shown once, a second key in the detail.
    js("document.getElementById('detail-rotate').click(); true")
    browser.wait_for("document.getElementById('secret-dialog').open && "
                     "/^tk_[0-9a-f]{16}_/.test(document.getElementById('secret-value').value) && "
                     "document.getElementById('secret-value').value !== %s" % json.dumps(secret),
                     "the second key")
    second = js("document.getElementById('secret-value').value")
    if server.call("GET", "/v1/usage", key=second)[0] != 200:
        raise Failure("the second key does not work: %r %s" % (second, server.call("GET", "/v1/usage", key=second)))
    js("document.getElementById('secret-close').click(); true")
    browser.wait_for("document.querySelectorAll('#detail-keys tbody tr').length === 2", "two keys")

    # Purge: refused until the id is typed exactly.
    js("document.getElementById('detail-purge').click(); true")
    browser.wait_for("document.getElementById('purge-dialog').open", "the purge dialog")
    for typed, enabled in (("hool", False), ("hooli", True)):
        js("{ const p = document.getElementById('purge-confirm'); p.value = %s;"
           "p.dispatchEvent(new Event('input')); } true" % json.dumps(typed))
        if js("!document.getElementById('purge-submit').disabled") != enabled:
            raise Failure("purge button with %r typed: enabled should be %s" % (typed, enabled))
    js("document.getElementById('purge-submit').click(); true")
    browser.wait_for("!document.getElementById('purge-dialog').open && "
                     "document.querySelectorAll('#tenants tbody tr').length === 3", "the purge")
    if server.call("GET", "/admin/tenants/hooli")[0] != 404:
        raise Failure("hooli was not purged")

    # Enable acme again from its detail.
    js("document.querySelector('#tenants tbody tr[data-tenant=\"acme\"]').click(); true")
    browser.wait_for("document.getElementById('detail-title').textContent === 'acme' && "
                     "document.getElementById('detail-toggle').textContent === 'Enable'",
                     "acme's detail")
    js("document.getElementById('detail-toggle').click(); true")
    browser.wait_for("document.getElementById('detail-state').textContent === 'active'",
                     "acme enabled")
    if server.call("GET", "/admin/tenants/acme")[1]["state"] != "active":
        raise Failure("acme is not enabled on the server")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenancyd", required=True)
    parser.add_argument("--screenshot", required=True)
    args = parser.parse_args()

    chromium = find_chromium()
    if chromium is None:
        print("SKIP: chromium is not installed (bash .ci/deps --test installs it)")
        return SKIP
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="tenancy-dashboard-")
    server = browser = None
    try:
        server = Tenancyd(args.tenancyd, workdir)
        seed(server)
        browser = Browser(chromium, workdir)
        check_page(browser, server, args.screenshot)
    except Failure as e:
        print("FAIL: %s" % e)
        return 1
    finally:
        if browser is not None:
            browser.close()
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    print("dashboard in chromium: ok in %.1f s; screenshot %s" % (elapsed, args.screenshot))
    if elapsed > DEADLINE_S:
        print("FAIL: took %.1f s, over the %d s budget" % (elapsed, DEADLINE_S))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
