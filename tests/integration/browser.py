"""A real browser for the tests: Debian's headless Chromium driven over the
DevTools protocol (a WebSocket, python3-websocket).  Nothing it loads may
leave loopback: every request goes to a proxy on a closed port except
those to 127.0.0.1, host names resolve to nothing, and every URL the page
asks for is recorded (Network domain) so that a test can assert it."""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from lmtptest import terminate

try:
    import websocket
except ImportError:  # python3-websocket is Debian's, the tests may run under another Python
    sys.path.append("/usr/lib/python3/dist-packages")
    import websocket

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def closed_port():
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="chromium-")
        self.log = open(os.path.join(self.dir, "log"), "wb")
        args = [CHROMIUM, "--headless=new", "--remote-debugging-port=0", "--remote-allow-origins=*",
                "--user-data-dir=" + os.path.join(self.dir, "profile"),
                "--proxy-server=http://127.0.0.1:%d" % closed_port(), "--proxy-bypass-list=127.0.0.1",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-gpu",
                "--window-size=1200,900", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.next_id = 0
        self.events = []
        self.urls = []          # every request the pages made, in order
        self.ws = websocket.create_connection(self._page_socket(), timeout=30, suppress_origin=True)
        self.call("Network.enable")
        self.call("Page.enable")

    def _page_socket(self):
        active = os.path.join(self.dir, "profile", "DevToolsActivePort")
        deadline = time.time() + 30
        while time.time() < deadline:
            if os.path.exists(active):
                with open(active) as f:
                    port = f.read().split("\n")[0]
                if port:
                    with urllib.request.urlopen("http://127.0.0.1:%s/json/list" % port, timeout=10) as r:
                        pages = [t for t in json.load(r) if t["type"] == "page"]
                    if pages:
                        return pages[0]["webSocketDebuggerUrl"]
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("chromium did not start")

    def _event(self, message):
        self.events.append(message)
        if message.get("method") == "Network.requestWillBeSent":
            self.urls.append(message["params"]["request"]["url"])

    def call(self, method, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == my:
                if "error" in message:
                    raise RuntimeError("%s: %s" % (method, message["error"]))
                return message.get("result", {})
            self._event(message)

    def wait_event(self, method, timeout=30):
        """The next @method event (or one seen already and not yet waited for)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i, e in enumerate(self.events):
                if e.get("method") == method:
                    del self.events[i]
                    return e
            self.ws.settimeout(max(0.1, deadline - time.time()))
            try:
                self._event(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                break
            finally:
                self.ws.settimeout(30)
        raise RuntimeError("no %s within %ss" % (method, timeout))

    def _loaded(self, action):
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        action()
        self.wait_event("Page.loadEventFired")

    def go(self, url):
        """Loads @url and waits for its load event."""
        self._loaded(lambda: self.call("Page.navigate", url=url))

    def js(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError("%s: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def text(self, selector="body"):
        return self.js("(document.querySelector(%s) || {innerText: null}).innerText" % json.dumps(selector))

    def click(self, selector):
        """A mouse click in the middle of @selector's box, as a user's,
        and waits for the page it loads."""
        box = self.js("(() => { const r = document.querySelector(%s).getBoundingClientRect();"
                      " return [r.x + r.width / 2, r.y + r.height / 2]; })()" % json.dumps(selector))
        def press():
            for kind in ("mousePressed", "mouseReleased"):
                self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
        self._loaded(press)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        terminate(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
