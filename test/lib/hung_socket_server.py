#!/usr/bin/env python3
# hung_socket_server.py: a hostile line-protocol server for fault tests.
#
# Usage: hung_socket_server.py PORT EVENTS_FILE
#
# Listens on 127.0.0.1:PORT, accepts every connection, reads the first
# line the client sends and never answers: the socket stays open until the
# client gives up.  Each line read appends "request <line>" to EVENTS_FILE,
# so that a test can wait until a client is stuck on it, and "closed" once
# that client has given up (closed the connection).  It stands for a
# router's admin socket (HAProxy's runtime API) that accepts connections
# and hangs, nothing more.  Runs until killed (by its PID).
import socket
import sys
import threading

port = int(sys.argv[1])
events_path = sys.argv[2]
events_lock = threading.Lock()
held = []  # sockets kept open on purpose


def event(line):
    with events_lock:
        with open(events_path, 'a') as f:
            f.write(line + '\n')


def serve(conn):
    data = b''
    while b'\n' not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    event('request %s' % data.split(b'\n', 1)[0].decode('latin-1'))
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
