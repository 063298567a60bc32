#!/usr/bin/env python3
# webhook_receiver.py: a loopback HTTP receiver standing in for a router's
# API in the routing tests (test/t/065_routing.pl).
#
#   webhook_receiver.py PORT LOGFILE KEYFILE FAIL_FIRST
#
# Every POST is logged to LOGFILE as one JSON line: its Idempotency-Key,
# whether its X-Driftmirror-Signature is the HMAC-SHA256 of the body with
# the key in KEYFILE, the body, and the status answered.  The first
# FAIL_FIRST requests of each idempotency key get 503 (the sender must
# retry with the same key); the others 200.  A change is "applied" once per
# key: the log says whether a request was the first 2xx for its key.
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, logfile, keyfile, fail_first = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(keyfile, 'rb') as f:
    key = f.read().strip()
seen = {}
applied = set()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
        ikey = self.headers.get('Idempotency-Key')
        sig = self.headers.get('X-Driftmirror-Signature', '')
        good = hmac.compare_digest(sig, 'sha256=' + hmac.new(key, body, hashlib.sha256).hexdigest())
        seen[ikey] = seen.get(ikey, 0) + 1
        status = 503 if seen[ikey] <= fail_first else 200
        first_apply = status == 200 and ikey not in applied
        if first_apply:
            applied.add(ikey)
        with open(logfile, 'a') as f:
            f.write(json.dumps({'key': ikey, 'signature_ok': good, 'status': status,
                                'applied': first_apply, 'body': json.loads(body)}) + '\n')
        self.send_response(status)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(('127.0.0.1', port), Handler).serve_forever()
