#!/usr/bin/env python3
# hung_http_receiver.py: a hostile HTTP receiver for fault tests.
#
# Usage: hung_http_receiver.py PORT EVENTS_FILE [line]
#
# Listens on 127.0.0.1:PORT, accepts every connection, reads the request
# (headers and body) and never answers: the socket stays open until the
# client gives up.  Each request read appends one line "request <method>
# <path>" to EVENTS_FILE, so that a test can wait until a client is stuck
# on it, and the line "closed" once that client has given up (closed the
# connection), so that a test can tell what happened while it was stuck.  It stands for a webhook receiver or an actuator that hangs,
# nothing more.  With "line", the request is the first line the client
# sends, logged whole ("request <line>"): a line protocol's server that
# hangs, such as a router's admin socket (HAProxy's runtime API).  Runs
# until killed (by its PID).
import socket
import sys
import threading

port = int(sys.argv[1])
events_path = sys.argv[2]
line_mode = len(sys.argv) > 3 and sys.argv[3] == 'line'
end_of_request = b'\n' if line_mode else b'\r\n\r\n'
events_lock = threading.Lock()
held = []  # sockets kept open on purpose


def event(line):
    with events_lock:
        with open(events_path, 'a') as f:
            f.write(line + '\n')


def serve(conn):
    data = b''
    while end_of_request not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    if line_mode:
        event('request %s' % data.split(b'\n', 1)[0].decode('latin-1'))
    else:
        head = data.split(b'\r\n', 1)[0].decode('latin-1').split(' ')
        event('request %s %s' % (head[0], head[1] if len(head) > 1 else ''))
    held.append(conn)
    # read (and drop) whatever else comes, never answer
    while conn.recv(65536):
        pass
    event('closed')


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('127.0.0.1', port))
srv.listen(64)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
