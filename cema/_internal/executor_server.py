"""The worker: a standard-library-only server that runs the host's calls in an env's python."""

# This file runs under the env's interpreter (Python 3.8 to 3.13) with Cema not installed there:
# standard library only, no syntax newer than 3.8, and it imports nothing from cema. The host
# (cema/runtime/) mirrors the wire format below; tests/integration/test_runtime_wire.py checks
# that the constants agree.
#
# Start-up, as driven by cema/runtime/launch.py:
#   1. The host binds and listens on an AF_UNIX socket in a private 0700 directory, starts
#      `python -u executor_server.py` with the listening socket inherited (pass_fds) and writes
#      one line to our stdin: "<protocol> <authkey hex> <listening fd or -> <address>". The key
#      never appears in argv, the environment or any log.
#   2. We accept connections for our whole life; each one must pass the mutual HMAC challenge of
#      multiprocessing.connection. A client without the key is refused and we keep serving. The
#      first authenticated connection is the host; later ones are closed.
#   3. We send HELLO (protocol version, pid, python) on it: that is the host's readiness signal.
#   4. Our stdin stays open: EOF on it means the host is gone (or closing us), and we exit.
#
# After the handshake both sides frame messages themselves on the socket (an 8-byte length, then
# the frame; see SocketChannel). A frame is
#   HEADER (kind, request id, table length, note length) + note (utf-8) + table (pickled:
#   (segment entries, names of the peer's segments we let go of)) + body (pickle protocol 5).
# Out-of-band pickle buffers of SHM_THRESHOLD_BYTES or more travel in shared-memory segments;
# cema/runtime/shm.py explains the pooling.
#
# Concurrency: leader/followers. One thread (the leader) reads the connection and runs each
# request itself, so a tiny call pays no thread hand-off. A supervisor thread polls: when the
# leader's call has run for PROMOTE_AFTER_S, it hands reading to another thread, so calls run
# concurrently (each in its own thread) and a long call never blocks the others. Replies go out
# under a lock.

import collections
import contextlib
import os
import pickle
import socket
import struct
import sys
import threading
import time
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BQIH")

HELLO = 1
CALL = 2
IMPORT = 3
SHUTDOWN = 4
RESULT = 5
ERROR = 6
UNPICKLABLE = 7

PICKLE_PROTOCOL = 5
#: out-of-band buffers at least this big go through shared memory; smaller ones stay in band
SHM_THRESHOLD_BYTES = 1 << 20
SHM_PREFIX = "cema_"
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

_DEV_SHM = "/dev/shm"  # noqa: S108 - where Linux keeps POSIX shared memory
POOLED = sys.platform.startswith("linux") and os.path.isdir(_DEV_SHM)
SEGMENT_STEP_BYTES = 1 << 20
POOL_KEEP_BYTES = 1 << 30
POOL_KEEP_ALWAYS = 2


def log(message):
    """Write a diagnostic line to stderr; the host logs it under the worker's name."""
    try:
        sys.stderr.write("cema worker: %s\n" % message)
        sys.stderr.flush()
    except Exception:  # noqa: S110 - stderr may be gone while exiting; nothing to do
        pass


# --- shared memory (mirrors cema/runtime/shm.py, which explains the scheme) -----------------------


def _path(name):
    return os.path.join(_DEV_SHM, name)


def _unlink(name):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(name))


class Outbox:
    """Segments we created to send buffers; reused once the host lets go of them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._free = {}
        self._busy = {}
        self._closed = False

    def put(self, buffer):
        view = buffer.raw()
        nbytes = view.nbytes
        if not POOLED:
            return _create_unpooled(view), nbytes, False
        with self._lock:
            fits = [(len(m), n) for n, m in self._free.items()
                    if nbytes <= len(m) <= 2 * nbytes + SEGMENT_STEP_BYTES]
            name = min(fits)[1] if fits else None
            segment = self._free.pop(name) if name else None
        if segment is None:
            name, segment = _create_pooled(nbytes)
        segment[:nbytes] = view
        with self._lock:
            if self._closed:
                segment.close()
                _unlink(name)
                raise OSError("the worker is exiting")
            self._busy[name] = segment
        return name, nbytes, True

    def release(self, names):
        with self._lock:
            for name in names:
                segment = self._busy.pop(name, None)
                if segment is not None:
                    self._free[name] = segment
            kept = sum(len(m) for m in self._free.values())
            while kept > POOL_KEEP_BYTES and len(self._free) > POOL_KEEP_ALWAYS:
                name = next(iter(self._free))
                segment = self._free.pop(name)
                kept -= len(segment)
                segment.close()
                _unlink(name)

    def abandon(self, entries):
        """A frame that will never be received: its segments are free again (or gone)."""
        for name, _, pooled in entries:
            if not pooled:
                unlink_segment(name)
        self.release(name for name, _, pooled in entries if pooled)

    def close(self):
        with self._lock:
            self._closed = True
            names = list(self._free) + list(self._busy)
        for name in names:
            _unlink(name)  # no munmap: we are about to exit, and a sender may still copy


class Inbox:
    """Segments received from the host, and the names to report back once they are let go."""

    def __init__(self):
        self.released = collections.deque()
        self._seen = set()

    def map(self, entry):
        name, nbytes, pooled = entry
        if not pooled:
            return _receive_unpooled(name, nbytes)
        import mmap
        import weakref

        self._seen.add(name)
        fd = os.open(_path(name), os.O_RDWR)
        try:
            segment = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        weakref.finalize(segment, self.released.append, name)
        return memoryview(segment)

    def drain(self):
        names = []
        while self.released:
            names.append(self.released.popleft())
        return tuple(names)

    def unlink_seen(self):
        for name in list(self._seen):
            _unlink(name)


def _create_pooled(nbytes):
    import mmap

    size = -(-max(nbytes, 1) // SEGMENT_STEP_BYTES) * SEGMENT_STEP_BYTES
    name = SHM_PREFIX + os.urandom(8).hex()
    fd = os.open(_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # allocate now: a full /dev/shm then fails here (ENOSPC), not with SIGBUS on first write
        os.posix_fallocate(fd, 0, size)
        return name, mmap.mmap(fd, size)
    except BaseException:
        _unlink(name)
        raise
    finally:
        os.close(fd)


def _open_segment(name, create, size=0):
    from multiprocessing import shared_memory

    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, create=create, size=size, track=False)
    segment = shared_memory.SharedMemory(name=name, create=create, size=size)
    if os.name == "posix":  # keep the resource tracker out: we unlink exactly once ourselves
        from multiprocessing import resource_tracker

        resource_tracker.unregister(segment._name, "shared_memory")
    return segment


def _unlink_open(segment):
    if sys.version_info < (3, 13) and os.name == "posix":
        # unlink() unregisters; register again first so the tracker's books stay balanced
        from multiprocessing import resource_tracker

        resource_tracker.register(segment._name, "shared_memory")
    segment.unlink()


def _create_unpooled(view):
    name = SHM_PREFIX + os.urandom(8).hex()
    segment = _open_segment(name, True, max(view.nbytes, 1))
    try:
        segment.buf[: view.nbytes] = view
    except BaseException:
        segment.close()
        unlink_segment(name)
        raise
    segment.close()
    return name


def _receive_unpooled(name, nbytes):
    segment = _open_segment(name, False)
    try:
        return memoryview(bytearray(segment.buf[:nbytes]))
    finally:
        segment.close()
        _unlink_open(segment)


def unlink_segment(name):
    """Remove a segment; one that is already gone is fine."""
    if POOLED:
        _unlink(name)
        return
    try:
        segment = _open_segment(name, False)
    except OSError:
        return
    segment.close()
    _unlink_open(segment)


OUTBOX = Outbox()
INBOX = Inbox()


# --- frames ---------------------------------------------------------------------------------------


def encode(kind, request_id, obj, note=""):
    """Pickle `obj` into one frame; returns (frame, segment entries) and cleans up on failure."""
    buffers = []

    def keep_large_out_of_band(buffer):
        view = memoryview(buffer)
        if view.nbytes < SHM_THRESHOLD_BYTES or not view.contiguous:
            return True
        buffers.append(buffer)
        return False

    body = pickle.dumps(obj, PICKLE_PROTOCOL, buffer_callback=keep_large_out_of_band)
    if not buffers and not note and not INBOX.released:  # the common case, kept short
        return HEADER.pack(kind, request_id, 0, 0) + body, ()
    entries = []
    try:
        for buffer in buffers:
            entries.append(OUTBOX.put(buffer))
    except OSError as exc:  # shared memory is full or missing: send the buffers in band
        OUTBOX.abandon(entries)
        log("shared memory unavailable (%s); sending %d bytes in band" % (
            exc, sum(memoryview(b).nbytes for b in buffers)))
        entries = []
        body = pickle.dumps(obj, PICKLE_PROTOCOL)
    except BaseException:
        OUTBOX.abandon(entries)
        raise
    table = pickle.dumps((tuple(entries), INBOX.drain()), PICKLE_PROTOCOL)
    note_bytes = note.encode("utf-8", "replace")[:0xFFFF]
    header = HEADER.pack(kind, request_id, len(table), len(note_bytes))
    return b"".join((header, note_bytes, table, body)), tuple(entries)


def decode_frame(frame):
    """Split a frame and map its segments: (kind, request id, note, body view, buffers)."""
    kind, request_id, table_len, note_len = HEADER.unpack_from(frame)
    if not table_len and not note_len:  # the common case, kept short
        return kind, request_id, "", memoryview(frame)[HEADER.size :], ()
    view = memoryview(frame)
    start = HEADER.size
    note = bytes(view[start : start + note_len]).decode("utf-8", "replace")
    start += note_len
    buffers = []
    if table_len:
        entries, released = pickle.loads(view[start : start + table_len])  # noqa: S301
        OUTBOX.release(released)
        for entry in entries:
            buffers.append(INBOX.map(entry))
        start += table_len
    return kind, request_id, note, view[start:], buffers


# --- framing after the handshake (mirrors cema/runtime/channel.py, which explains it) ----------

LENGTH = struct.Struct("!Q")
BUFFER_BYTES = 1 << 16
COALESCE_BYTES = 1 << 16


class SocketChannel:
    """Length-prefixed frames on the authenticated socket; one reader and one sender at a time."""

    def __init__(self, sock):
        self._sock = sock
        self._buf = bytearray(BUFFER_BYTES)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    def send(self, frame):
        header = LENGTH.pack(len(frame))
        if len(frame) <= COALESCE_BYTES:
            self._sock.sendall(header + frame)
        else:
            self._sock.sendall(header)
            self._sock.sendall(frame)

    def recv(self):
        while True:
            avail = self._end - self._start
            if avail >= LENGTH.size:
                size = LENGTH.unpack_from(self._buf, self._start)[0]
                begin = self._start + LENGTH.size
                if avail - LENGTH.size >= size:
                    frame = bytes(self._view[begin : begin + size])
                    self._start = begin + size
                    if self._start == self._end:
                        self._start = self._end = 0
                    return frame
                if size > len(self._buf) - LENGTH.size:
                    return self._recv_large(begin, size)
            if self._end == len(self._buf):
                self._buf[:avail] = self._buf[self._start : self._end]
                self._start, self._end = 0, avail
            got = self._sock.recv_into(self._view[self._end :])
            if not got:
                raise EOFError("the host closed the connection")
            self._end += got

    def _recv_large(self, begin, size):
        frame = bytearray(size)
        have = self._end - begin
        frame[:have] = self._view[begin : self._end]
        self._start = self._end = 0
        view = memoryview(frame)
        while have < size:
            got = self._sock.recv_into(view[have:])
            if not got:
                raise EOFError("the host closed the connection")
            have += got
        return frame


class PipeChannel:  # pragma: no cover - Windows named pipes keep Connection's framing
    def __init__(self, conn):
        self._conn = conn

    def send(self, frame):
        self._conn.send_bytes(frame)

    def recv(self):
        return self._conn.recv_bytes()


# --- running requests --------------------------------------------------------------------------


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
                found = self._load_path(module) if _is_path(module) else self._load_name(module)
                self._modules[module] = found
            return found

    def _load_name(self, module):
        import importlib

        return importlib.import_module(module)

    def _load_path(self, module):
        import importlib.util
        import zlib

        path = os.path.realpath(module)
        folder, filename = os.path.split(path)
        stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(filename)[0])
        # a private name per file: two plugins' main.py never share a module object, and
        # objects of plugin classes do not pretend to be importable in the host
        name = "_cema_%08x_%s" % (zlib.crc32(path.encode("utf-8", "surrogateescape")), stem)
        if name in sys.modules:
            return sys.modules[name]
        if folder not in sys.path:
            sys.path.insert(0, folder)  # the plugin imports its sibling modules
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
        self.send(HELLO, 0, {
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "python": "%d.%d.%d" % sys.version_info[:3],
            "executable": sys.executable,
        })
        with self.state_lock:
            self.threads += 1
        self._start_thread(self._loop, "cema-worker")
        self._start_thread(self._supervise, "cema-worker-supervisor")

    @staticmethod
    def _start_thread(target, name):
        thread = threading.Thread(target=target, name=name)
        thread.daemon = True
        thread.start()

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
        frame, entries = encode(kind, request_id, obj, note)
        try:
            with self.send_lock:
                self.channel.send(frame)
        except (OSError, ValueError):
            OUTBOX.abandon(entries)
            exit_now(0)  # the host is gone

    def handle(self, frame):
        kind, request_id, table_len, note_len = HEADER.unpack_from(frame)
        try:
            if table_len or note_len:
                body, buffers = decode_frame(frame)[3:]
            else:  # the common case, kept short
                body, buffers = memoryview(frame)[HEADER.size :], ()
            if kind == CALL:
                module, function, args, kwargs = pickle.loads(body, buffers=buffers)  # noqa: S301
                del body, buffers
                result = getattr(self.modules.get(module), function)(*args, **kwargs)
                # let go of the arguments now: segments they map are reported free in the reply
                del args, kwargs
                if type(result).__name__ == "coroutine":
                    import asyncio

                    result = asyncio.run(result)
            elif kind == IMPORT:
                result = self.modules.functions(pickle.loads(body))  # noqa: S301
            elif kind == SHUTDOWN:
                self.send(RESULT, request_id, None)
                exit_now(0)
            else:
                raise ValueError("unknown request kind %r" % kind)
        except BaseException as exc:
            self.send_error(request_id, exc)
            return
        self.send_result(request_id, result)

    def send_result(self, request_id, result):
        # the type's name helps the host explain a result it cannot unpickle; builtins it can
        note = "" if type(result).__module__ == "builtins" else _type_name(result)
        try:
            frame, entries = encode(RESULT, request_id, result, note)
        except BaseException as exc:
            message = "%s: %s" % (type(exc).__name__, exc)
            self.send(UNPICKLABLE, request_id, message, _type_name(result))
            return
        try:
            with self.send_lock:
                self.channel.send(frame)
        except (OSError, ValueError):
            OUTBOX.abandon(entries)
            exit_now(0)

    def send_error(self, request_id, exc):
        try:
            pickled = pickle.dumps(exc, PICKLE_PROTOCOL)
        except BaseException:
            pickled = None
        try:
            message = str(exc)
        except BaseException:
            message = "<unprintable %s>" % type(exc).__name__
        info = (_type_name(exc), message, _format_traceback(exc), pickled)
        self.send(ERROR, request_id, info)


def exit_now(code):
    """Leave at once: running calls are abandoned, user threads do not keep us alive.

    Our segments go with us; so do the host's we saw, in case the host is dead (a live host
    unlinks its own anyway, and our mappings of them end with us).
    """
    OUTBOX.close()
    INBOX.unlink_seen()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # the pipe may be gone already
            stream.flush()
    os._exit(code)


# --- start-up ---------------------------------------------------------------------------------


def read_bootstrap():
    """Read the one line the host writes to stdin, then hand fd 0 to the host watcher."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(0, 4096)
        if not chunk:
            exit_now(2)  # the host died before telling us anything
        data += chunk
    version, key_hex, fd, address = data.decode("ascii").rstrip("\n").split(" ", 3)
    if int(version) != PROTOCOL_VERSION:
        log("protocol %s requested, this server speaks %d" % (version, PROTOCOL_VERSION))
        exit_now(2)
    watch_fd = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # user code reading stdin gets EOF, not our control pipe
    os.close(devnull)
    return bytes.fromhex(key_hex), (None if fd == "-" else int(fd)), address, watch_fd


def watch_host(fd):
    """Exit when the host goes away: its end of our stdin closes."""
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    exit_now(0)


class Acceptor:
    """Accept connections for the worker's whole life; only the key's holder gets served."""

    def __init__(self, authkey):
        self.authkey = authkey
        self.lock = threading.Lock()
        self.served = False

    def serve_socket(self, listener):
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._authenticate, args=(sock,), daemon=True).start()

    def _authenticate(self, sock):
        conn = Connection(os.dup(sock.fileno()))
        # shutting the socket down wakes a read blocked on a silent client
        timer = threading.Timer(AUTH_TIMEOUT_S, _shutdown, args=(sock,))
        timer.daemon = True
        timer.start()
        try:
            deliver_challenge(conn, self.authkey)
            answer_challenge(conn, self.authkey)
        except Exception as exc:
            log("refused a connection that failed authentication (%s)" % type(exc).__name__)
            conn.close()
            sock.close()
            return
        finally:
            timer.cancel()
        conn.close()  # it was a dup for the handshake; frames go straight over the socket
        self._serve(SocketChannel(sock), sock.close)

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
            self._serve(PipeChannel(conn), conn.close)


def _shutdown(sock):
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def main():
    if sys.version_info < (3, 8):
        log("Python %d.%d is too old: the worker needs 3.8 or newer" % sys.version_info[:2])
        exit_now(2)
    import faulthandler

    faulthandler.enable()  # a segfault leaves a Python traceback in the host's crash message
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    authkey, fd, address, watch_fd = read_bootstrap()
    watcher = threading.Thread(target=watch_host, args=(watch_fd,), name="cema-host-watch")
    watcher.daemon = True
    watcher.start()
    acceptor = Acceptor(authkey)
    if fd is None:
        acceptor.serve_pipe(address)
    else:
        acceptor.serve_socket(socket.socket(fileno=fd))
    exit_now(0)


if __name__ == "__main__":
    main()
