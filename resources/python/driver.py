"""Persistent Python interpreter for opencode-env's execute_python tool.

Runs inside a sandbox, one process per episode, so that variables, imports and functions persist
between calls. The host talks to it with one JSON object per line:

  host -> driver  {"op": "exec", "id": 7, "code": "...", "max_output_bytes": 1048576}
                  {"op": "interrupt", "id": 7}          (raise KeyboardInterrupt in call 7)
  driver -> host  {"ready": true, "python": "3.11.7", "pid": 12}   (once, at start)
                  {"id": 7, "stdout": "...", "stderr": "...", "exit_code": 0,
                   "interrupted": false, "dropped": {"stdout": 0, "stderr": 0}}

The protocol uses private copies of the original stdin/stdout. File descriptors 1 and 2 are pipes that
this driver drains, so output is captured at the descriptor level (print, C extensions, subprocesses
alike) and a flood of output never blocks the code or grows memory past the cap.
"""

import ast
import fcntl
import json
import linecache
import os
import queue
import select
import signal
import sys
import termios
import threading
import time
import traceback
import types

DRIVER_FILE = os.path.abspath(__file__)
DRAIN_WAIT_S = 1.0


def _pending_bytes(fd):
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, sys.byteorder)


class StreamCapture:
    """Points a file descriptor at a pipe and keeps what arrives, up to a per-call limit."""

    def __init__(self, fd):
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        self.read_end = read_end
        self.cond = threading.Condition()
        self.limit = 1 << 20
        self.kept = bytearray()
        self.dropped = 0
        threading.Thread(target=self._drain, name=f"drain-fd{fd}", daemon=True).start()

    def _drain(self):
        while True:
            select.select([self.read_end], [], [])
            with self.cond:
                data = os.read(self.read_end, 1 << 16)
                room = self.limit - len(self.kept)
                if room > 0:
                    self.kept += data[:room]
                self.dropped += max(0, len(data) - max(room, 0))
                self.cond.notify_all()

    def begin(self, limit):
        with self.cond:
            self.limit = limit
            self.kept = bytearray()
            self.dropped = 0

    def collect(self):
        """Everything written so far. Holding the lock while the pipe is empty means the drainer is idle."""
        deadline = time.monotonic() + DRAIN_WAIT_S
        with self.cond:
            while _pending_bytes(self.read_end) > 0 and time.monotonic() < deadline:
                self.cond.wait(0.05)
            kept, dropped = bytes(self.kept), self.dropped
            self.kept = bytearray()
            self.dropped = 0
        text = kept.decode("utf-8", errors="replace")
        if dropped:
            text += f"\n[output truncated: {dropped} more bytes not shown (limit {self.limit} bytes)]\n"
        return text, dropped


class Interrupts:
    """SIGINT raises KeyboardInterrupt only inside the call it was aimed at, never in the driver itself."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running_id = None
        self.target_id = None
        self.delivered = False
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame):
        if self.running_id is not None and self.target_id == self.running_id:
            self.delivered = True
            self.target_id = None
            raise KeyboardInterrupt

    def request(self, call_id):
        with self.lock:
            if self.running_id == call_id:
                self.target_id = call_id
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


def _user_traceback(exc):
    """The traceback as the user would see it from a script: no frames of this driver or of ast.parse."""
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc))
    report = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack if os.path.abspath(frame.filename) != DRIVER_FILE]
    )
    lines = list(report.format())
    if len(report.stack) == 0:
        # Nothing left but the header: show just the exception line(s).
        lines = list(report.format_exception_only())
    return "".join(lines)


def _flush_std_streams():
    for stream in {id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s is not None}.values():
        try:
            stream.flush()
        except Exception:
            pass


class Kernel:
    def __init__(self, proto_out):
        self.proto_out = proto_out
        # User code lives in a fresh __main__ module, so pickle and friends find its classes there.
        main_module = types.ModuleType("__main__")
        main_module.__builtins__ = __builtins__
        sys.modules["__main__"] = main_module
        self.namespace = main_module.__dict__
        self.stdout = StreamCapture(1)
        self.stderr = StreamCapture(2)
        self.interrupts = Interrupts()
        self.cell_count = 0
        self.flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
        self.loop = None

    def send(self, message):
        self.proto_out.write((json.dumps(message) + "\n").encode("utf-8"))
        self.proto_out.flush()

    def _run_code(self, code_obj):
        result = eval(code_obj, self.namespace)
        if isinstance(result, types.CoroutineType):
            import asyncio

            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(result)

    def _execute(self, source, filename):
        """Runs a cell like a REPL would: the value of a final expression statement is displayed."""
        tree = ast.parse(source, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Interactive([tree.body.pop()])
        if tree.body:
            self._run_code(compile(tree, filename, "exec", flags=self.flags, dont_inherit=True))
        if last is not None:
            self._run_code(compile(last, filename, "single", flags=self.flags, dont_inherit=True))

    def run_cell(self, request):
        call_id = request["id"]
        source = request["code"]
        self.cell_count += 1
        filename = f"<cell-{self.cell_count}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        limit = int(request.get("max_output_bytes") or (1 << 20))
        self.stdout.begin(limit)
        self.stderr.begin(limit)
        exit_code = 0
        self.interrupts.delivered = False
        self.interrupts.running_id = call_id
        try:
            try:
                self._execute(source, filename)
            finally:
                self.interrupts.running_id = None
        except SystemExit as exc:
            if exc.code is None:
                exit_code = 0
            elif isinstance(exc.code, int):
                exit_code = exc.code
            else:
                sys.stderr.write(f"{exc.code}\n")
                exit_code = 1
        except BaseException as exc:  # noqa: BLE001 - everything the user's code raises is reported
            sys.stderr.write(_user_traceback(exc))
            exit_code = 1
        _flush_std_streams()
        stdout, dropped_out = self.stdout.collect()
        stderr, dropped_err = self.stderr.collect()
        self.send({
            "id": call_id,
            "stdout": stdout,
            "stderr": stderr,
            "exit_code": exit_code,
            "interrupted": self.interrupts.delivered,
            "dropped": {"stdout": dropped_out, "stderr": dropped_err},
        })


def main(proto_in, proto_out):
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for fd in (proto_in.fileno(), proto_out.fileno()):
        os.set_inheritable(fd, False)

    kernel = Kernel(proto_out)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr
    sys.stdin = open(0, "r", closefd=False)
    sys.__stdin__ = sys.stdin
    sys.argv = [""]
    sys.path.insert(0, "")
    seed = os.environ.pop("OPENCODE_ENV_SEED", None)
    if seed is not None:
        import random

        random.seed(int(seed))

    requests = queue.Queue()

    def read_requests():
        for line in iter(proto_in.readline, b""):
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("op") == "interrupt":
                kernel.interrupts.request(message.get("id"))
            else:
                requests.put(message)
        # The host closed our input: it is gone or wants us gone.
        os._exit(0)

    threading.Thread(target=read_requests, name="requests", daemon=True).start()
    kernel.send({"ready": True, "python": sys.version.split()[0], "pid": os.getpid()})
    while True:
        request = requests.get()
        if request.get("op") == "exec":
            kernel.run_cell(request)


if __name__ == "__main__":
    # Private copies of the protocol channel and of the real stderr (for the driver's own failures);
    # user code gets an empty stdin and captured stdout/stderr.
    _proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    _proto_out = os.fdopen(os.dup(1), "wb")
    _driver_log = os.dup(2)
    os.set_inheritable(_driver_log, False)
    try:
        main(_proto_in, _proto_out)
    except BaseException:
        os.write(_driver_log, ("opencode-env python driver failed:\n" + traceback.format_exc()).encode())
        os._exit(70)
