#!/usr/bin/env python3
"""demo/actuator.py: the sandbox's stand-in for an orchestrator's API.

In production, a resource of kind cache, app, web or service names the URL
of an HTTP actuator: a small API in front of whatever runs it (Kubernetes,
a cloud provider, a load balancer's controller).  None of those runs in the
sandbox, so this script plays their part for the demo, following the
contract of docs/mirrors.md ("HTTP actuator contract"): create a mirror,
report its status, promote it (or abort a promotion), scale it (the
forecast phase's POST .../scale), delete it.  It runs nothing real: a
"mirror" here is a record with a made-up address and a capacity; each scale
request is written to stderr (the demo's actuator.log).

    demo/actuator.py PORT

One process serves every actuator: the first path segment of a request
names it (http://127.0.0.1:PORT/<actuator>/mirrors/...).  Requests with an
Idempotency-Key already seen get the answer they got the first time.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
mirrors = {}        # (actuator, mirror name) -> {"primary", "mirror", "polls", "capacity"}
answers = {}        # Idempotency-Key -> (status, body)
switched = set()    # (actuator, mirror name, promotion id) made, for an abort


def address(actuator, colour):
    return "http://%s-%s.sandbox:8080" % (actuator, colour)


class Actuator(BaseHTTPRequestHandler):
    server_version = "dm-demo-actuator/1"

    def log_message(self, fmt, *args):      # quiet: the demo prints what matters
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def parts(self):
        # /<actuator>/mirrors[/<name>[/promote|/scale]]
        p = [x for x in self.path.split("/") if x]
        if len(p) < 2 or p[1] != "mirrors":
            return None
        return p[0], (p[2] if len(p) > 2 else None), (p[3] if len(p) > 3 else None)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return None

    def keyed(self, handler):
        key = self.headers.get("Idempotency-Key")
        with lock:
            if key and key in answers:
                return self.reply(*answers[key])
            status, body = handler()
            if key:
                answers[key] = (status, body)
        self.reply(status, body)

    def do_POST(self):
        where = self.parts()
        req = self.body()
        if where is None or req is None:
            return self.reply(400, {"error": "not a request of the contract"})
        actuator, name, verb = where
        if name is None:                                    # create
            def create():
                m = mirrors.setdefault((actuator, req["mirror"]), {
                    "primary": address(actuator, "blue"),
                    "mirror": req.get("endpoint") or address(actuator, "green"),
                    "polls": 0})
                return 201, {"state": "creating", "endpoint": m["mirror"]}
            return self.keyed(create)
        if verb == "promote":
            def promote():
                m = mirrors.get((actuator, name))
                if m is None:
                    return 404, {"error": "no such mirror"}
                made = (actuator, name, req.get("promotion"))
                if req.get("action") == "abort":
                    if made in switched:        # undo it
                        switched.discard(made)
                        m["primary"], m["mirror"] = m["mirror"], m["primary"]
                    return 200, {"state": "aborted"}
                switched.add(made)
                m["primary"], m["mirror"] = m["mirror"], m["primary"]
                return 200, {"state": "promoted", "endpoint": m["primary"],
                             "mirror_endpoint": m["mirror"],
                             "detail": {"switched_by": "demo actuator"}}
            return self.keyed(promote)
        if verb == "scale":
            def scale():
                m = mirrors.get((actuator, name))
                if m is None:
                    return 404, {"error": "no such mirror"}
                cap = req.get("capacity")
                if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
                    return 400, {"error": "capacity must be a positive integer"}
                m["capacity"] = cap
                print("actuator %s: mirror %s scaled to %d instance(s) (%s)"
                      % (actuator, name, cap, req.get("decision")), file=sys.stderr, flush=True)
                return 200, {"state": "scaled", "capacity": cap}
            return self.keyed(scale)
        self.reply(404, {"error": "unknown path"})

    def do_GET(self):
        where = self.parts()
        if where is None or where[1] is None:
            return self.reply(404, {"error": "unknown path"})
        with lock:
            m = mirrors.get((where[0], where[1]))
            if m is None:
                return self.reply(404, {"error": "no such mirror"})
            m["polls"] += 1
            state = "ready" if m["polls"] > 1 else "creating"
            self.reply(200, {"state": state, "endpoint": m["mirror"],
                             "lag_seconds": 0.2,
                             "detail": {"polls": m["polls"], "capacity": m.get("capacity")}})

    def do_DELETE(self):
        where = self.parts()
        if where is None or where[1] is None:
            return self.reply(404, {"error": "unknown path"})
        with lock:
            mirrors.pop((where[0], where[1]), None)
        self.reply(202, {"state": "deleting"})


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Actuator).serve_forever()
