"""The worker: a standard-library-only server that runs the host's calls in an env's python."""

# This file runs under the env's interpreter (Python 3.8 to 3.13) with Cema not installed there:
# standard library only, no syntax newer than 3.8, and nothing from cema but protocol.py beside
# it: the wire format (frames, shared memory, framing, the bootstrap line), shared with the host.
#
# Start-up (cema/runtime/launch.py drives it): the host hands us a listening socket (pass_fds)
# and writes the bootstrap line to our stdin. We accept connections for our whole life; each
# must pass multiprocessing.connection's mutual HMAC challenge, a client without the key is
# refused, the first authenticated one is the host (later ones are closed), and our HELLO on it
# is the host's readiness signal. EOF on stdin means the host is gone (or closing us): we exit
# (C code holding the GIL stops that; on Linux, cema/_proc.py's parent-death signal kills us).
#
# Concurrency: leader/followers. One thread (the leader) reads the connection and runs each
# request itself, so a tiny call pays no thread hand-off. A supervisor thread polls: when the
# leader's call has run for PROMOTE_AFTER_S, it hands reading to another thread, so calls run
# concurrently (each in its own thread), a long call never blocks the others; sends are locked.

import contextlib
import errno
import importlib.util
import os
import pickle
import socket
import sys
import threading
import time
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge


def log(message):
    """Write a diagnostic line to stderr; the host logs it under the worker's name."""
    with contextlib.suppress(Exception):  # stderr may be gone while exiting; nothing to do
        sys.stderr.write("cema worker: %s\n" % message)
        sys.stderr.flush()


if sys.version_info < (3, 8):  # checked before loading protocol.py, which 3.6 cannot even parse
    log("Python %d.%d is too old: the worker needs 3.8 or newer" % sys.version_info[:2])
    os._exit(2)


def load_file(name, path):
    """Import the file at `path` as the module `name` (the one already loaded, if any)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load %s as a Python module" % path, path=path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[name]
        raise
    return loaded


# by path, under a private name: our folder never goes on sys.path (main() even drops it from
# there), so a user's module named `protocol` is not shadowed
_HERE = os.path.dirname(os.path.abspath(__file__))
protocol = load_file("_cema_protocol", os.path.join(_HERE, "protocol.py"))

#: a client that has not finished the challenge after this long is dropped
AUTH_TIMEOUT_S = 10.0
#: at most this many calls run at once; further requests wait for a free thread
MAX_THREADS = 64
#: a call running this long lets another thread read the next request (checked by polling)
PROMOTE_AFTER_S = 0.005
#: the polling period of an idle worker
SUPERVISE_IDLE_S = 0.1
#: idle threads beyond this many end, so a burst of concurrency does not leave threads behind
MAX_IDLE_THREADS = 8
#: at most this many clients await authentication; further ones are closed at once
MAX_PENDING = 64
#: out of descriptors (or memory), accepting pauses this long before it tries again
ACCEPT_BACKOFF_S = 0.1

OUTBOX = protocol.Outbox(log)  # spill: the host's private folder, named in the bootstrap line
INBOX = protocol.Inbox()


def _is_path(module):
    return os.path.isabs(module) or module.endswith(".py")


def _type_name(obj):
    cls = type(obj)
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", cls.__name__)
    if module in (None, "builtins"):
        return qualname
    if module.startswith("_cema_"):  # a plugin file: "_cema_<crc>_main" reads as "main"
        module = module.split("_", 3)[-1]
    return "%s.%s" % (module, qualname)


def _format_traceback(exc):
    import traceback

    tb = exc.__traceback__
    # drop this file's leading frames: the user wants the plugin's part of the story
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class Modules:
    """Imported modules, keyed by resolved path (plugin files) or module name."""

    def __init__(self):
        self._modules = {}
        self._lock = threading.Lock()

    def get(self, module):
        found = self._modules.get(module)
        if found is not None:
            return found
        with self._lock:
            found = self._modules.get(module)
            if found is None:
                load = self._load_path if _is_path(module) else importlib.import_module
                found = self._modules[module] = load(module)
            return found

    def _load_path(self, module):
        import zlib

        path = os.path.realpath(module)
        folder, filename = os.path.split(path)
        stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(filename)[0])
        # a private name per file: two plugins' main.py never share a module object, and
        # objects of plugin classes do not pretend to be importable in the host
        name = "_cema_%08x_%s" % (zlib.crc32(path.encode("utf-8", "surrogateescape")), stem)
        if name not in sys.modules and folder not in sys.path:
            sys.path.insert(0, folder)  # the plugin imports its sibling modules
        return load_file(name, path)

    def functions(self, module):
        loaded = self.get(module)
        exported = getattr(loaded, "__all__", None)
        if exported is not None:
            return sorted(str(name) for name in exported)
        return sorted(
            name
            for name, value in vars(loaded).items()
            if not name.startswith("_")
            and callable(value)
            and getattr(value, "__module__", None) == loaded.__name__
        )


class Server:
    """Serve one authenticated host connection (see "Concurrency" at the top)."""

    def __init__(self, channel):
        self.channel = channel
        self.modules = Modules()
        self.send_lock = threading.Lock()
        # held by the thread that reads the connection; the supervisor may release it on behalf
        # of a leader stuck in a long call, so another thread reads meanwhile
        self.read_lock = threading.Lock()
        self.state_lock = threading.Lock()  # guards everything below
        self.leader = None  # token of the thread that owns read_lock
        self.executing = False  # the leader runs a call
        self.calls = 0  # calls started by leaders, to tell a long call from a new one
        self.idle = 0  # threads waiting for read_lock
        self.threads = 0

    def start(self):
        python = "%d.%d.%d" % sys.version_info[:3]
        hello = {"protocol": protocol.PROTOCOL_VERSION, "pid": os.getpid(), "python": python}
        self.send(protocol.HELLO, 0, dict(hello, executable=sys.executable))
        with self.state_lock:
            self.threads += 1
        self._start_thread(self._loop, "cema-worker")
        self._start_thread(self._supervise, "cema-worker-supervisor")

    @staticmethod
    def _start_thread(target, name):
        threading.Thread(target=target, name=name, daemon=True).start()

    def _loop(self):
        token = object()
        while True:
            with self.state_lock:
                if self.idle >= MAX_IDLE_THREADS:
                    self.threads -= 1
                    return
                self.idle += 1
            self.read_lock.acquire()
            with self.state_lock:
                self.idle -= 1
                self.leader = token
            while True:
                try:
                    frame = self.channel.recv()
                except (EOFError, OSError):
                    exit_now(0)  # the host closed the connection: nothing more to do
                # no lock: the supervisor only reads these, and promotes only after seeing the
                # same call twice; the check below, which must be atomic, takes the lock
                self.calls += 1
                self.executing = True
                self.handle(frame)
                with self.state_lock:
                    if self.leader is not token:
                        break  # demoted during a long call: someone else reads now
                    self.executing = False

    def _supervise(self):
        """Let another thread read when a leader's call runs long, so calls overlap.

        Polling keeps the common case free of thread hand-offs: a call shorter than
        PROMOTE_AFTER_S never wakes another thread.
        """
        seen = None
        period = PROMOTE_AFTER_S
        last_calls = 0
        while True:
            time.sleep(period)
            spawn = False
            with self.state_lock:
                busy = self.executing
                if busy and self.calls == seen and self.threads < MAX_THREADS:
                    self.leader = None
                    self.executing = False
                    busy = False
                    promote = True
                    if self.idle == 0:
                        self.threads += 1
                        spawn = True
                else:
                    promote = False
                seen = self.calls if busy else None
                active = busy or self.calls != last_calls
                last_calls = self.calls
            if promote:
                if spawn:
                    self._start_thread(self._loop, "cema-worker")
                self.read_lock.release()
            # back off while idle, so an idle worker costs next to nothing
            period = PROMOTE_AFTER_S if active else min(period * 2, SUPERVISE_IDLE_S)

    def send(self, kind, request_id, obj, note=""):
        self._send(*protocol.encode(kind, request_id, obj, note, outbox=OUTBOX, inbox=INBOX))

    def _send(self, frame, entries):
        try:
            with self.send_lock:
                self.channel.send(frame)
        except (OSError, ValueError):
            OUTBOX.abandon(entries)
            exit_now(0)  # the host is gone

    def handle(self, frame):
        try:
            kind, request_id, _, body, buffers = protocol.decode(frame, inbox=INBOX, outbox=OUTBOX)
            if kind == protocol.CALL:
                module, function, args, kwargs = pickle.loads(body, buffers=buffers)  # noqa: S301
                del body, buffers
                result = getattr(self.modules.get(module), function)(*args, **kwargs)
                # let go of the arguments now: segments they map are reported free in the reply
                del args, kwargs
                if type(result).__name__ == "coroutine":
                    import asyncio

                    result = asyncio.run(result)
            elif kind == protocol.IMPORT:
                result = self.modules.functions(pickle.loads(body))  # noqa: S301
            elif kind == protocol.SHUTDOWN:
                self.send(protocol.RESULT, request_id, None)
                exit_now(0)
            else:
                raise ValueError("unknown request kind %r" % kind)
        except BaseException as exc:
            # the request id comes first, before anything that can fail: that caller hears of it
            self.send_error(protocol.HEADER.unpack_from(frame)[1], exc)
            return
        self.send_result(request_id, result)

    def send_result(self, request_id, result):
        # the type's name helps the host explain a result it cannot unpickle; builtins it can
        note = "" if type(result).__module__ == "builtins" else _type_name(result)
        try:
            encoded = protocol.encode(
                protocol.RESULT, request_id, result, note, outbox=OUTBOX, inbox=INBOX
            )
        except BaseException as exc:
            message = "%s: %s" % (type(exc).__name__, exc)
            self.send(protocol.UNPICKLABLE, request_id, message, _type_name(result))
            return
        self._send(*encoded)

    def send_error(self, request_id, exc):
        try:
            pickled = pickle.dumps(exc, protocol.PICKLE_PROTOCOL)
        except BaseException:
            pickled = None
        try:
            message = str(exc)
        except BaseException:
            message = "<unprintable %s>" % type(exc).__name__
        info = (_type_name(exc), message, _format_traceback(exc), pickled)
        self.send(protocol.ERROR, request_id, info)


def exit_now(code):
    """Leave at once (running calls abandoned), with our segments and the host's we saw."""
    OUTBOX.close(unmap=False)  # no munmap: we are about to exit, and a sender may still copy
    INBOX.unlink_seen()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # the pipe may be gone already
            stream.flush()
    os._exit(code)


def read_bootstrap():
    """Read the one line the host writes to stdin, then hand fd 0 to the host watcher."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(0, 4096)
        if not chunk:
            exit_now(2)  # the host died before telling us anything
        data += chunk
    version, authkey, fd, address = protocol.parse_bootstrap(data)
    OUTBOX.spill = os.path.dirname(address) if fd is not None else None
    if version != protocol.PROTOCOL_VERSION:
        log("protocol %s requested, this server speaks %d" % (version, protocol.PROTOCOL_VERSION))
        exit_now(2)
    watch_fd = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # user code reading stdin gets EOF, not our control pipe
    os.close(devnull)
    return authkey, fd, address, watch_fd


def watch_host(fd):
    """Exit when the host goes away: its end of our stdin closes."""
    with contextlib.suppress(OSError):  # EINTR is retried for us (PEP 475)
        while os.read(fd, 4096):
            pass
    exit_now(0)


class Acceptor:
    """Accept connections for the worker's whole life; only the key's holder gets served.

    Any process of the user may connect, and none may starve us: at most MAX_PENDING clients
    await authentication (more are closed at once), each for AUTH_TIMEOUT_S at most, and being
    out of descriptors (EMFILE) pauses accepting instead of ending it.
    """

    def __init__(self, authkey):
        self.authkey = authkey
        self.lock = threading.Lock()
        self.served = False
        self.slots = threading.BoundedSemaphore(MAX_PENDING)

    def serve_socket(self, listener):
        starved = False  # logged once per episode
        while True:
            try:
                sock, _ = listener.accept()
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                        continue  # that client gave up already
                    return  # the listener itself is broken
                if not starved:
                    log("cannot accept connections for now (%s); retrying" % exc)
                starved = True
                time.sleep(ACCEPT_BACKOFF_S)  # pending clients time out and free descriptors
                continue
            starved = False
            if not self.slots.acquire(blocking=False):
                sock.close()  # too many clients await authentication already
                continue
            try:
                threading.Thread(target=self._authenticate, args=(sock,), daemon=True).start()
            except RuntimeError:  # out of threads: this client is not served
                self.slots.release()
                sock.close()

    def _authenticate(self, sock):
        channel = protocol.SocketChannel(sock)
        # shutting the socket down wakes a read blocked on a silent client
        timer = threading.Timer(AUTH_TIMEOUT_S, channel.shutdown)
        timer.daemon = True
        conn = None
        try:  # everything can fail here, os.dup (EMFILE) and starting the timer included
            timer.start()
            conn = Connection(os.dup(sock.fileno()))  # a dup: closing it leaves `sock` open
            deliver_challenge(conn, self.authkey)
            answer_challenge(conn, self.authkey)
        except Exception as exc:
            log("refused a connection that failed authentication (%s)" % type(exc).__name__)
            channel.close()
            return
        finally:
            timer.cancel()
            if conn is not None:
                conn.close()  # frames go straight over the socket
            self.slots.release()
        self._serve(channel, channel.close)

    def _serve(self, channel, close):
        with self.lock:
            first = not self.served
            self.served = True
        if not first:
            log("closed a second authenticated connection; one host per worker")
            close()
            return
        Server(channel).start()

    def serve_pipe(self, address):  # pragma: no cover - Windows named pipes
        from multiprocessing.connection import Listener

        listener = Listener(address, family="AF_PIPE", authkey=self.authkey)
        while True:
            try:
                conn = listener.accept()
            except Exception as exc:
                log("refused a connection that failed authentication (%s)" % type(exc).__name__)
                continue
            self._serve(protocol.PipeChannel(conn), conn.close)


def main():
    import faulthandler

    faulthandler.enable()  # a segfault leaves a Python traceback in the host's crash message
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    authkey, fd, address, watch_fd = read_bootstrap()
    threading.Thread(target=watch_host, args=(watch_fd,), name="cema-watch", daemon=True).start()
    acceptor = Acceptor(authkey)
    if fd is None:
        acceptor.serve_pipe(address)
    else:
        acceptor.serve_socket(socket.socket(fileno=fd))
    exit_now(0)


if __name__ == "__main__":
    main()
