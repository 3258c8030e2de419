"""Serve a real OpenStack Placement on loopback with the standard library's WSGI server.

Run with the Python of the Placement venv (tests/.build/placement-server), never resmon's::

    OS_PLACEMENT_CONFIG_DIR=<dir with placement.conf> python serve_placement.py PORT

Threaded, so a slow request does not hold the others up.
"""

import socketserver
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _Threaded(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def main() -> None:
    from placement.wsgi.api import application

    server = make_server("127.0.0.1", int(sys.argv[1]), application, _Threaded, _Quiet)
    print("serving", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
