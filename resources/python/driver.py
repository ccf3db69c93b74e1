"""Persistent Python interpreter for opencode-env's execute_python tool.

Runs inside a sandbox, one per episode, so that variables, imports and functions persist between calls.
The host talks to it with one JSON object per line over this process's stdin and stdout:

  host -> driver  {"op":"exec","id":7,"max_output_bytes":1048576,"code":"..."}   (keys in this order, no spaces:
                  the supervisor reads that header itself and leaves the code for the worker to decode)
                  {"op": "interrupt", "id": 7}          (raise KeyboardInterrupt in call 7)
  driver -> host  {"ready": true, "python": "3.11.7", "pid": 12, "worker_pid": 13}   (once, at start)
                  {"id": 7, "stdout_b64": "...", "stderr_b64": "...", "exit_code": 0,
                   "interrupted": false, "dropped": {"stdout": 0, "stderr": 0}}

Output travels base64-encoded, so a reply is at most 4/3 of the two capped streams plus a small envelope
whatever bytes the code printed, and the host can bound every frame.

User code must not reach that channel, so this process is split in two:
- the *supervisor* (this process) alone holds the host channel (fds 0 and 1, and 2 for its own failures).
  It makes itself non-dumpable, so code running under the same uid cannot reopen its descriptors through
  /proc/<pid>/fd, read its memory or ptrace it. It never runs user code and never blocks on the worker.
- the *worker*, forked at start, runs user code in a persistent `__main__` namespace. Its stdin is
  /dev/null, its fds 1 and 2 are pipes the supervisor drains (keeping at most max_output_bytes per stream
  and call), and it holds no copy of the host channel. It reports "ready" and "call N done" over a private
  status pipe. User code can write to that pipe too, so the supervisor trusts nothing on it: a frame must
  match the format exactly, be short, and name the call that is running; anything else is a protocol
  violation, for which the supervisor kills the worker and exits (the host reports that the interpreter
  died). A well-formed frame can at most end the running call early, which the code could do anyway.
  The supervisor writes every reply itself, with the id of the call it started and only the output
  captured during that call, so one call's reply can never be taken for another's.

Interrupts: the supervisor sends SIGINT to the worker only while the targeted call runs; the worker raises
KeyboardInterrupt only while a call runs. When the worker ends (os._exit, a crash, an OOM kill), the
supervisor exits with the worker's status (128 + signal for a signal). When the host closes stdin, the
supervisor kills the worker and exits. The worker's private pipes are close-on-exec, so programs it starts
inherit only fds 0, 1 and 2.
"""

import ast
import base64
import errno
import json
import linecache
import os
import re
import select
import signal
import sys
import time
import traceback
import types

DRIVER_FILE = os.path.abspath(__file__)
DRAIN_WAIT_S = 1.0
READ_CHUNK = 1 << 16
DEFAULT_OUTPUT_LIMIT = 1 << 20
# Worker stderr kept while it starts, shown to the host if it dies before it is ready.
STARTUP_LOG_LIMIT = 16 * 1024
# Longest legitimate status frame: "done <id> <exit code> <0|1>".
STATUS_FRAME_MAX = 64
STATUS_FRAME = re.compile(rb"ready|done (\d{1,18}) (-?\d{1,10}) ([01])")
# How the host (src/core/python/interpreter.ts) begins an exec request; other lines are decoded in full.
EXEC_HEADER = re.compile(rb'\{"op":"exec","id":(\d{1,18}),"max_output_bytes":(\d{1,18}),"code":')
DRIVER_FAILURE_EXIT = 70
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4


def _prctl(option, value):
    """prctl(2) through ctypes; False where it is unavailable."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except Exception:
        return False


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def _exit_code_of(status):
    """The worker's wait status as a shell would report it: its exit code, or 128 + the signal that killed it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


# ---------------------------------------------------------------------------------------------------
# Worker: runs user code. Everything here executes in the forked child.


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
    """The worker's read-run-report loop over its private request and status pipes."""

    def __init__(self, request_fd, status_fd):
        self.request_fd = request_fd
        self.status_fd = status_fd
        # User code lives in a fresh __main__ module, so pickle and friends find its classes there.
        main_module = types.ModuleType("__main__")
        main_module.__builtins__ = __builtins__
        sys.modules["__main__"] = main_module
        self.namespace = main_module.__dict__
        self.cell_count = 0
        self.flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
        self.loop = None
        self.running = False
        self.interrupted = False
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame):
        # The supervisor interrupts only the call it was asked to; between calls there is nothing to stop.
        if self.running:
            self.interrupted = True
            raise KeyboardInterrupt

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

    def run_cell(self, source):
        """Runs one cell; returns (exit_code, interrupted). Output went to fds 1 and 2."""
        self.cell_count += 1
        filename = f"<cell-{self.cell_count}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exit_code = 0
        self.interrupted = False
        try:
            try:
                self.running = True
                self._execute(source, filename)
            finally:
                self.running = False
        except SystemExit as exc:
            if exc.code is None:
                exit_code = 0
            elif isinstance(exc.code, int):
                exit_code = int(exc.code)
            else:
                sys.stderr.write(f"{exc.code}\n")
                exit_code = 1
        except BaseException as exc:  # noqa: BLE001 - everything the user's code raises is reported
            sys.stderr.write(_user_traceback(exc))
            exit_code = 1
        _flush_std_streams()
        if not -(2**31) <= exit_code < 2**31:
            exit_code = 1
        return exit_code, self.interrupted

    def serve(self):
        _write_all(self.status_fd, b"ready\n")
        pending = bytearray()
        scanned = 0
        while True:
            newline = pending.find(b"\n", scanned)
            if newline < 0:
                scanned = len(pending)
                data = os.read(self.request_fd, READ_CHUNK)
                if not data:
                    os._exit(0)  # the supervisor is gone
                pending += data
                continue
            request = json.loads(bytes(pending[:newline]))
            del pending[: newline + 1]
            scanned = 0
            exit_code, interrupted = self.run_cell(request["code"])
            _write_all(self.status_fd, b"done %d %d %d\n" % (request["id"], exit_code, 1 if interrupted else 0))


def _keep_only_fds(keep):
    """Closes every descriptor not in `keep` (the host channel among them)."""
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        open_fds = range(3, 4096)
    for fd in open_fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _worker_main(stdout_w, stderr_w, request_r, status_w, supervisor_pid, seed):
    """Entry point of the forked worker; never returns."""
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(stdout_w, 1)
        os.dup2(stderr_w, 2)
        _keep_only_fds({0, 1, 2, request_r, status_w})
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # Die with the supervisor; user code is free to be inspected by itself, unlike the supervisor.
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        _prctl(PR_SET_DUMPABLE, 1)
        if os.getppid() != supervisor_pid:
            os._exit(0)

        kernel = Kernel(request_r, status_w)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr
        sys.stdin = open(0, "r", closefd=False)
        sys.__stdin__ = sys.stdin
        sys.argv = [""]
        sys.path.insert(0, "")
        if seed is not None:
            import random

            random.seed(int(seed))
        kernel.serve()
    except BaseException:
        try:
            os.write(2, ("opencode-env python worker failed:\n" + traceback.format_exc()).encode())
        finally:
            os._exit(DRIVER_FAILURE_EXIT)
    os._exit(DRIVER_FAILURE_EXIT)


# ---------------------------------------------------------------------------------------------------
# Supervisor: holds the host channel, captures the worker's output, turns status frames into replies.


class Capture:
    """Drains one of the worker's output pipes, keeping at most `limit` bytes of the running call."""

    def __init__(self, fd, limit):
        self.fd = fd
        self.open = True
        self.begin(limit)

    def begin(self, limit):
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0

    def read_once(self):
        """Reads what is there; returns the number of bytes, 0 if none, -1 at end of file."""
        try:
            data = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return 0
        if not data:
            self.open = False
            return -1
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += data[:room]
        self.dropped += max(0, len(data) - max(room, 0))
        return len(data)

    def drain(self, deadline):
        """Reads until the pipe is empty: output written just before a call ended belongs to that call."""
        while self.open and time.monotonic() < deadline and self.read_once() > 0:
            pass

    def take(self):
        """The call's output with the truncation marker, and the count of bytes not kept."""
        data, dropped = bytes(self.kept), self.dropped
        if dropped:
            data += f"\n[output truncated: {dropped} more bytes not shown (limit {self.limit} bytes)]\n".encode()
        self.begin(0)  # between calls output is drained and discarded
        return data, dropped


class Call:
    def __init__(self, call_id, limit, line):
        self.id = call_id
        self.limit = limit
        self.line = line
        self.interrupt_requested = False


class ProtocolViolation(Exception):
    pass


class Supervisor:
    HOST_IN, HOST_OUT, LOG = 0, 1, 2

    def __init__(self):
        self.worker_pid = None
        self.ready = False
        self.calls = []  # exec requests not yet started (the host sends one at a time)
        self.current = None
        self.host_buffer = bytearray()
        self.host_scanned = 0
        self.status_buffer = bytearray()
        self.status_open = True
        self.to_worker = bytearray()

    def start(self):
        # Before the fork: the worker must never see a dumpable supervisor, nor miss a SIGCHLD.
        if not _prctl(PR_SET_DUMPABLE, 0):
            self.log("opencode-env python driver: prctl(PR_SET_DUMPABLE) is unavailable; the channel is less private\n")
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        request_r, self.request_w = os.pipe()
        self.status_r, status_w = os.pipe()
        seed = os.environ.pop("OPENCODE_ENV_SEED", None)
        supervisor_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _worker_main(stdout_w, stderr_w, request_r, status_w, supervisor_pid, seed)
        self.worker_pid = pid
        for fd in (stdout_w, stderr_w, request_r, status_w):
            os.close(fd)
        for fd in (stdout_r, stderr_r, self.request_w):
            os.set_blocking(fd, False)
        self.stdout = Capture(stdout_r, 0)
        self.stderr = Capture(stderr_r, STARTUP_LOG_LIMIT)

    def log(self, text):
        try:
            _write_all(self.LOG, text.encode("utf-8", "backslashreplace"))
        except OSError:
            pass

    def send(self, message):
        _write_all(self.HOST_OUT, (json.dumps(message) + "\n").encode("utf-8"))

    def run(self):
        captures = (self.stdout, self.stderr)
        while True:
            readers = [self.HOST_IN, self.wakeup_r] + [c.fd for c in captures if c.open]
            if self.status_open:
                readers.append(self.status_r)
            writers = [self.request_w] if self.to_worker else []
            readable, writable, _ = select.select(readers, writers, [])
            if self.wakeup_r in readable:
                self.check_worker()
            for capture in captures:
                if capture.fd in readable:
                    capture.read_once()
            try:
                if self.status_r in readable:
                    self.read_status()
            except ProtocolViolation as violation:
                self.kill_worker_and_exit(f"the worker broke the status protocol ({violation})")
            if writable:
                self.write_to_worker()
            if self.HOST_IN in readable:
                self.read_host()

    # -- the worker's life ---------------------------------------------------------------------------

    def check_worker(self):
        try:
            while os.read(self.wakeup_r, 512):
                pass
        except BlockingIOError:
            pass
        pid, status = os.waitpid(self.worker_pid, os.WNOHANG)
        if pid:
            self.exit_like_worker(status)

    def exit_like_worker(self, status):
        if not self.ready:
            self.stderr.drain(time.monotonic() + DRAIN_WAIT_S)
            self.log(bytes(self.stderr.kept).decode("utf-8", "replace"))
        os._exit(_exit_code_of(status))

    def kill_worker_and_exit(self, reason):
        self.log(f"opencode-env python driver: {reason}; the worker was killed.\n")
        try:
            os.kill(self.worker_pid, signal.SIGKILL)
            os.waitpid(self.worker_pid, 0)
        except OSError:
            pass
        os._exit(DRIVER_FAILURE_EXIT)

    def on_status_closed(self):
        """The worker closed its status pipe: normally because it is exiting, then its status is reported."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.worker_pid, os.WNOHANG)
            if pid:
                self.exit_like_worker(status)
            time.sleep(0.01)
        self.kill_worker_and_exit("the worker closed its status pipe")

    # -- worker -> supervisor ------------------------------------------------------------------------

    def read_status(self):
        data = os.read(self.status_r, READ_CHUNK)
        if not data:
            self.status_open = False
            self.on_status_closed()
        self.status_buffer += data
        while True:
            newline = self.status_buffer.find(b"\n")
            if newline < 0 or newline > STATUS_FRAME_MAX:
                if len(self.status_buffer) > STATUS_FRAME_MAX:
                    raise ProtocolViolation(f"a frame longer than {STATUS_FRAME_MAX} bytes")
                return
            frame = bytes(self.status_buffer[:newline])
            del self.status_buffer[: newline + 1]
            self.on_status(frame)

    def on_status(self, frame):
        match = STATUS_FRAME.fullmatch(frame)
        if match is None:
            raise ProtocolViolation("a malformed frame")
        if frame == b"ready":
            if self.ready:
                raise ProtocolViolation("a second ready frame")
            self.ready = True
            self.stderr.begin(0)
            self.send({"ready": True, "python": sys.version.split()[0], "pid": os.getpid(), "worker_pid": self.worker_pid})
            self.start_next_call()
            return
        call_id, exit_code, interrupted = int(match.group(1)), int(match.group(2)), match.group(3) == b"1"
        if self.current is None or call_id != self.current.id:
            running = f"call {self.current.id}" if self.current else "no call"
            raise ProtocolViolation(f"a done frame for call {call_id} while {running} was running")
        self.finish_call(exit_code, interrupted)

    def finish_call(self, exit_code, interrupted):
        call, self.current = self.current, None
        self.drain_captures()
        stdout, dropped_out = self.stdout.take()
        stderr, dropped_err = self.stderr.take()
        self.send({
            "id": call.id,
            "stdout_b64": base64.b64encode(stdout).decode("ascii"),
            "stderr_b64": base64.b64encode(stderr).decode("ascii"),
            "exit_code": exit_code,
            "interrupted": interrupted and call.interrupt_requested,
            "dropped": {"stdout": dropped_out, "stderr": dropped_err},
        })
        self.start_next_call()

    def drain_captures(self):
        """Reads the output pipes until they are empty: output written just before a call ended belongs to that call.
        A zero-timeout select says which pipes hold anything, so a call that printed nothing costs one system call."""
        deadline = time.monotonic() + DRAIN_WAIT_S
        captures = (self.stdout, self.stderr)
        while time.monotonic() < deadline:
            fds = [capture.fd for capture in captures if capture.open]
            ready = select.select(fds, [], [], 0)[0] if fds else ()
            if not ready:
                return
            for capture in captures:
                if capture.fd in ready:
                    capture.read_once()

    # -- supervisor -> worker ------------------------------------------------------------------------

    def start_next_call(self):
        if not self.ready or self.current is not None or not self.calls:
            return
        self.current = self.calls.pop(0)
        # The request goes out first, so the worker starts on it while the captures are reset (only this loop reads them).
        self.to_worker += self.current.line
        self.write_to_worker()
        self.stdout.begin(self.current.limit)
        self.stderr.begin(self.current.limit)

    def write_to_worker(self):
        try:
            del self.to_worker[: os.write(self.request_w, self.to_worker)]
        except BlockingIOError:
            pass
        except BrokenPipeError:
            self.to_worker.clear()  # the worker is gone; its exit is reported through SIGCHLD

    # -- host -> supervisor --------------------------------------------------------------------------

    def read_host(self):
        data = os.read(self.HOST_IN, READ_CHUNK)
        if not data:
            # The host closed our input: it is gone or wants us gone.
            try:
                os.kill(self.worker_pid, signal.SIGKILL)
                os.waitpid(self.worker_pid, 0)
            except OSError:
                pass
            os._exit(0)
        self.host_buffer += data
        while True:
            newline = self.host_buffer.find(b"\n", self.host_scanned)
            if newline < 0:
                self.host_scanned = len(self.host_buffer)
                return
            line = bytes(self.host_buffer[: newline + 1])
            del self.host_buffer[: newline + 1]
            self.host_scanned = 0
            self.on_host(line)

    def on_host(self, line):
        header = EXEC_HEADER.match(line)
        if header:
            # The code is the worker's to decode: decoding it here too would double the cost of every call.
            limit = int(header.group(2)) or DEFAULT_OUTPUT_LIMIT
            self.calls.append(Call(int(header.group(1)), limit, line))
            self.start_next_call()
            return
        message = json.loads(line)
        if message.get("op") == "exec":
            limit = int(message.get("max_output_bytes") or DEFAULT_OUTPUT_LIMIT)
            self.calls.append(Call(message["id"], limit, line))
            self.start_next_call()
        elif message.get("op") == "interrupt":
            if self.current is not None and self.current.id == message.get("id"):
                self.current.interrupt_requested = True
                try:
                    os.kill(self.worker_pid, signal.SIGINT)
                except ProcessLookupError:
                    pass


if __name__ == "__main__":
    _supervisor = Supervisor()
    try:
        _supervisor.start()
        _supervisor.run()
    except BaseException:
        _supervisor.log("opencode-env python driver failed:\n" + traceback.format_exc())
        if _supervisor.worker_pid:
            try:
                os.kill(_supervisor.worker_pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(DRIVER_FAILURE_EXIT)
