#!/usr/bin/env python3
# hung_pg_server.py: a hostile "PostgreSQL server" for fault tests.
#
# Usage: hung_pg_server.py PORT EVENTS_FILE
#
# Listens on 127.0.0.1:PORT and speaks just enough of the frontend/backend
# protocol (v3) to log a client in: it refuses SSL and GSS encryption
# ('N'), answers a startup packet with AuthenticationOk, a few
# ParameterStatus messages, BackendKeyData and ReadyForQuery, and from then
# on reads whatever the client sends and never answers.  A CancelRequest
# connection is accepted, read and held open without a word, which is what
# makes a PostgreSQL 15 PQcancel() wait forever.  Each event is appended to
# EVENTS_FILE as one line ("login", "query", "cancel"), so that a test can
# wait for what it needs to see.  Runs until killed.
import os
import socket
import struct
import sys
import threading

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608

port = int(sys.argv[1])
events_path = sys.argv[2]
events_lock = threading.Lock()
held = []  # sockets kept open on purpose


def event(name):
    with events_lock:
        with open(events_path, 'a') as f:
            f.write(name + '\n')


def recv_exact(sock, n):
    buf = b''
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def message(kind, payload):
    return kind + struct.pack('!I', len(payload) + 4) + payload


def parameter(name, value):
    return message(b'S', name.encode() + b'\0' + value.encode() + b'\0')


def serve(sock):
    held.append(sock)
    try:
        while True:
            head = recv_exact(sock, 8)
            if head is None:
                return
            length, code = struct.unpack('!II', head)
            rest = recv_exact(sock, length - 8) if length > 8 else b''
            if rest is None:
                return
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                sock.sendall(b'N')
                continue
            if code == CANCEL_REQUEST:
                event('cancel')
                break  # hold the connection open, say nothing
            if code != PROTOCOL_3:
                return
            reply = message(b'R', struct.pack('!I', 0))
            for name, value in (('server_version', '15.0'), ('server_encoding', 'UTF8'),
                                ('client_encoding', 'UTF8'), ('DateStyle', 'ISO, MDY'),
                                ('integer_datetimes', 'on'), ('TimeZone', 'UTC'),
                                ('standard_conforming_strings', 'on')):
                reply += parameter(name, value)
            reply += message(b'K', struct.pack('!II', 4242, 0x5eed))
            reply += message(b'Z', b'I')
            sock.sendall(reply)
            event('login')
            break
        # logged in (or a cancel request): read forever, answer nothing
        announced = False
        while True:
            data = sock.recv(65536)
            if not data:
                return
            if not announced and code == PROTOCOL_3:
                event('query')
                announced = True
    except OSError:
        return
    finally:
        sock.close()
        held.remove(sock)


def main():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(('127.0.0.1', port))
    srv.listen(128)
    with open(events_path, 'a') as f:
        f.write('listening %d\n' % os.getpid())
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()
