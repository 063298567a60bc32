#!/usr/bin/env python3
"""hostile_prometheus.py: a broken Prometheus on loopback, for fault tests.

Usage: hostile_prometheus.py PORT

Answers GET /api/v1/query_range like Prometheus would, except that the
points depend on the PromQL query, so that one server plays every broken
exporter a test needs:

  good        one point per step of the window asked for, value 7
  ts_1e300    a point at unix time 1e300, then the good points
  ts_1e400    a point at 1e400 (beyond a double), then the good points
  ts_old      a point 40 days before the window, then the good points
  ts_1970     a point at unix time 0, then the good points
  ts_future   a point 30 days after the window, then the good points
  val_junk    values "1e400", "NaN", "+Inf", "-1e999" in the window
  refused     the good points with value 666

It stands for an exporter or a Prometheus gone wrong, nothing more: no
PromQL is evaluated.  Stop it by its PID.
"""
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def points(start, end, step, value):
    out = []
    t = start
    while t <= end + 1e-9 and len(out) < 11000:
        out.append('[%.3f, "%s"]' % (t, value))
        t += step
    return out


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path != '/api/v1/query_range':
            self.send_error(404)
            return
        q = urllib.parse.parse_qs(url.query)
        query = q.get('query', [''])[0]
        start = float(q['start'][0])
        end = float(q['end'][0])
        step = float(q['step'][0])
        good = points(start, end, step, '7')
        extra = {
            'ts_1e300': ['[1e300, "1"]'],
            'ts_1e400': ['[1e400, "1"]'],
            'ts_old': ['[%.3f, "1"]' % (start - 40 * 86400)],
            'ts_1970': ['[0, "1"]'],
            'ts_future': ['[%.3f, "1"]' % (end + 30 * 86400)],
        }
        if query in extra:
            values = extra[query] + good
        elif query == 'val_junk':
            junk = ('1e400', 'NaN', '+Inf', '-1e999')
            values = ['[%.3f, "%s"]' % (end - (len(junk) - 1 - i) * step, v)
                      for i, v in enumerate(junk)]
        elif query == 'refused':
            values = points(start, end, step, '666')
        else:
            values = good
        # written by hand: json.dumps cannot write 1e400
        body = ('{"status": "success", "data": {"resultType": "matrix", "result": '
                '[{"metric": {}, "values": [%s]}]}}' % ', '.join(values)).encode()
        json.loads(body.replace(b'1e400', b'1'))  # otherwise well-formed
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == '__main__':
    ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
