"""Devices and processes for distributed samplers (admm, dsgld): meshes, multi-process start-up, lost peers.

One process: `samplax.infer.agents.agent_mesh` lays the agent axis over the local devices (several GPUs, or CPU devices emulated with
``jax_num_cpu_devices`` / `configure_devices` before JAX starts its backend).

Several processes (one per machine, or several on one machine): every process runs the same program and calls
`initialize` first, before any JAX computation and before ``samplax.fit`` is first used (importing BlackJAX, as
``samplax.fit`` does, starts JAX's backend)::

    from samplax.infer import distributed
    distributed.initialize(coordinator="10.0.0.1:4321", num_processes=2, process_id=0)   # 1 on the other machine
    import samplax
    fit = samplax.fit(model, data, method="admm", num_agents=8)        # same call everywhere
    if distributed.is_output_process():
        fit.save("fit.nc")

The arguments may come from the environment instead: ``SAMPLAX_COORDINATOR``, ``SAMPLAX_NUM_PROCESSES``,
``SAMPLAX_PROCESS_ID``, ``SAMPLAX_HEARTBEAT_S``. This is JAX's own runtime (``jax.distributed``: its coordination
service and key-value store; collectives over gloo on CPU, NCCL on GPU); samplax adds four things around it:

* the coordination service runs in a small child process of process 0 (not inside it), with JAX's recoverable mode,
  so that losing any sampling process, process 0 included, never makes JAX abort the others with a C++ trace;
* a heartbeat through the key-value store: each process bumps a counter every ``heartbeat_s / 5`` seconds and
  watches the others'. A peer that is killed, stopped (SIGSTOP) or cut off is noticed within ``heartbeat_s``; the
  process prints which peer was lost and exits with status 1 (never a hang);
* `guard`: a collective that fails (gloo raises when a peer's socket closes) ends the process the same way;
* failures as messages: a process that fails (an uncaught exception, or an error that ``samplax fit`` reports and
  turns into its exit status: 2 for a usage error, 1 otherwise) publishes its error under
  ``samplax/failed/{process_id}`` in the key-value store (`report_failure`; `initialize` installs a
  ``sys.excepthook`` that does it) and exits with its own status and message, without the finishing barrier (the
  others are busy in collectives that need it, and would only time out there). The others read ``samplax/failed/``
  with their heartbeat and exit with status 1 within about ``heartbeat_s / 5`` seconds, naming the peer and its
  error: ``samplax: process 0: process 1 of 2 failed: ValueError: ...``. If process 0 fails, its coordination
  service child outlives it long enough for the others to read the error. A peer whose program simply ends (or
  calls `shutdown`) while this process is still inside `guard` counts as gone once it has been done for
  ``heartbeat_s`` (every process runs the same collectives, so it can never join the next one).

If the machine running the coordination service itself goes down, JAX's client ends the other processes with its
own fatal message: that is outside samplax's reach.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import threading
import time

__all__ = [
    "AGENT_AXIS",
    "DistributedContext",
    "initialize",
    "configure_devices",
    "configure_from_cli",
    "current",
    "is_output_process",
    "shutdown",
    "report_failure",
    "exit_if_failed",
    "guard",
]

AGENT_AXIS = "agents"
DEFAULT_HEARTBEAT_S = 30.0
EXIT_LOST_PEER = 1
FAILED_KEY = "samplax/failed/"  # + process id: the error of a process that failed
_MAX_FAILURE_CHARS = 2000  # keep a published error (and the peers' message) readable

_CONTEXT: DistributedContext | None = None


# ---------------------------------------------------------------------------------------------------------------------
# start-up
def configure_devices(num_cpu_devices: int | None):
    """Emulate ``num_cpu_devices`` CPU devices (testing and weak scaling on one machine); call before JAX starts."""
    if num_cpu_devices is None:
        return
    if not isinstance(num_cpu_devices, int) or isinstance(num_cpu_devices, bool) or num_cpu_devices < 1:
        raise ValueError(f"num_cpu_devices must be a positive integer, got {num_cpu_devices!r}")
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        if jax.config.jax_num_cpu_devices != num_cpu_devices and jax.local_device_count() != num_cpu_devices:
            raise ValueError(
                f"num_cpu_devices={num_cpu_devices}: JAX has already started with "
                f"{jax.local_device_count()} devices; set it before any JAX computation (first thing in "
                "the script), or set XLA_FLAGS=--xla_force_host_platform_device_count=N"
            )
        return
    jax.config.update("jax_num_cpu_devices", num_cpu_devices)


def _env(name: str, cast):
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return cast(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not a valid {cast.__name__}") from None


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_s: float | None = None,
    num_cpu_devices: int | None = None,
    initialization_timeout_s: int = 120,
) -> DistributedContext | None:
    """Join a multi-process job (JAX's ``jax.distributed`` runtime; CPU collectives over gloo).

    Returns None when there is only one process. Call it first, before any JAX computation.

    coordinator: "host:port" of the coordination service, reachable from every process (process 0 starts it);
    num_processes, process_id: the job size and this process's id in 0 .. num_processes - 1; heartbeat_s: a peer
    silent this long counts as lost (default 30 s); num_cpu_devices: emulate this many CPU devices per process.
    Unset arguments are read from SAMPLAX_COORDINATOR, SAMPLAX_NUM_PROCESSES, SAMPLAX_PROCESS_ID,
    SAMPLAX_HEARTBEAT_S.
    """
    global _CONTEXT
    coordinator = coordinator or _env("SAMPLAX_COORDINATOR", str)
    num_processes = num_processes if num_processes is not None else _env("SAMPLAX_NUM_PROCESSES", int)
    process_id = process_id if process_id is not None else _env("SAMPLAX_PROCESS_ID", int)
    if heartbeat_s is None:
        heartbeat_s = _env("SAMPLAX_HEARTBEAT_S", float) or DEFAULT_HEARTBEAT_S
    configure_devices(num_cpu_devices)
    if num_processes is None or num_processes == 1:
        if coordinator is not None and num_processes is None:
            raise ValueError("coordinator is set but num_processes is not; pass num_processes (and process_id)")
        return None
    if _CONTEXT is not None:
        raise ValueError("samplax.infer.distributed.initialize was already called in this process")
    if not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"num_processes must be a positive integer, got {num_processes!r}")
    if coordinator is None or ":" not in coordinator:
        raise ValueError(f"coordinator must be 'host:port' reachable from every process, got {coordinator!r}")
    if process_id is None or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in 0 .. {num_processes - 1}, got {process_id!r}")
    if not heartbeat_s > 0:
        raise ValueError(f"heartbeat_s must be positive, got {heartbeat_s!r}")

    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise ValueError(
            "initialize() must run before any JAX computation, and before samplax.fit is first used "
            "(importing BlackJAX starts JAX's backend, which has already started here); call it first "
            "thing in the script"
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_enable_recoverability", True)
    jax_heartbeat = int(4 * heartbeat_s + 10)  # JAX's own liveness check stays behind samplax's
    service = None
    try:
        from jax._src import distributed as jax_distributed
        from jax._src.lib import _jax
    except ImportError:  # pragma: no cover - a JAX without these internals: the plain start-up
        jax_distributed = None
    if jax_distributed is not None and hasattr(_jax, "get_distributed_runtime_service"):
        if process_id == 0:
            service = _start_service(coordinator, num_processes, jax_heartbeat, initialization_timeout_s)
        state = jax_distributed.global_state
        state.coordinator_address = coordinator
        state.process_id = process_id
        state.num_processes = num_processes
        # shutdown_on_destruction=False: JAX's client shutdown happens in `finish` or not at all (a failed process)
        state.client = _jax.get_distributed_runtime_client(
            coordinator,
            process_id,
            init_timeout=initialization_timeout_s,
            use_compression=True,
            heartbeat_timeout=jax_heartbeat,
            shutdown_on_destruction=False,
        )
        try:
            state.client.connect()
        except Exception as err:
            if service is not None:
                service.kill()
            raise RuntimeError(f"process {process_id} could not join the samplax job at {coordinator}: {err}") from None
        state.initialize_preemption_sync_manager()
    else:  # pragma: no cover
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            heartbeat_timeout_seconds=jax_heartbeat,
            initialization_timeout=initialization_timeout_s,
        )
    _CONTEXT = DistributedContext(coordinator, num_processes, process_id, float(heartbeat_s), service)
    _CONTEXT.start()
    atexit.register(shutdown)
    _install_excepthook()
    return _CONTEXT


def configure_from_cli(
    *,
    devices: int | None = None,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    heartbeat: float | None = None,
) -> DistributedContext | None:
    """What ``samplax fit`` calls before anything else: emulated CPU devices and the multi-process start-up."""
    return initialize(coordinator, num_processes, process_id, heartbeat_s=heartbeat, num_cpu_devices=devices)


def current() -> DistributedContext | None:
    """The running multi-process context, or None in a single-process run."""
    return _CONTEXT


def is_output_process() -> bool:
    """True in process 0 (or when there is one process): the process that writes results."""
    return _CONTEXT is None or _CONTEXT.process_id == 0


def shutdown():
    """Leave the job cleanly (mark this process done, stop the heartbeat, shut JAX's client down). Idempotent."""
    global _CONTEXT
    if _CONTEXT is not None:
        context, _CONTEXT = _CONTEXT, None
        context.finish()


def report_failure(error: BaseException | str):
    """Tell the other processes of the job that this one failed and will not finish.

    They exit with status 1 and a message naming this process and ``error``, instead of waiting for it at the next
    collective. This process then leaves without waiting for them (`shutdown` skips the finishing barrier) and exits
    with its own status and message.

    Uncaught exceptions are reported automatically (`initialize` installs a ``sys.excepthook``); call it where a
    script catches an error and exits on its own (``samplax fit`` does, for usage errors and failed runs). The
    first report wins; a no-op in a single-process run.

    Args:
        error: the exception, or a sentence saying what went wrong.
    """
    if _CONTEXT is not None:
        _CONTEXT.fail(_describe(error))


def exit_if_failed(status: int) -> None:
    """End a process that reported a failure (`report_failure`) now, with ``status``, skipping interpreter teardown.

    JAX's distributed client is torn down by C++ destructors at interpreter exit; after a failure the coordination
    service or a peer may already be gone, and that teardown can abort the process (SIGABRT and a C++ trace instead
    of the status and message). The failure is published and the output flushed, so nothing is lost. A no-op when
    this process reported no failure (and in a single-process run).
    """
    if _CONTEXT is None or _CONTEXT._failure is None:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def _describe(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        text = str(error).strip()
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    else:
        text = str(error).strip()
    return text if len(text) <= _MAX_FAILURE_CHARS else text[: _MAX_FAILURE_CHARS - 3] + "..."


def _install_excepthook():
    """Publish an uncaught exception to the peers before Python prints it and exits (status 1)."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        try:
            report_failure(value if value is not None else kind.__name__)
        finally:
            previous(kind, value, traceback)
        exit_if_failed(1)  # Python's own exit status for an uncaught exception, without the client's teardown

    sys.excepthook = hook


def guard():
    """Context manager around work that runs collectives.

    A failure caused by a lost peer ends the process with a message naming it (exit status 1). A no-op in a
    single-process run.
    """
    return _CONTEXT.guard() if _CONTEXT is not None else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------------------------------
# the coordination service in a child process
def _start_service(coordinator: str, num_processes: int, jax_heartbeat: int, timeout_s: float):
    command = [
        sys.executable,
        "-m",
        "samplax.infer.distributed",
        "serve",
        coordinator,
        str(num_processes),
        str(jax_heartbeat),
        str(os.getpid()),
    ]
    child = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(child.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if selector.select(timeout=0.2):
            line = child.stdout.readline()
            if line.strip() == "ready":
                selector.close()
                return child
        if child.poll() is not None:
            break
    selector.close()
    child.kill()
    error = child.stderr.read().strip().splitlines()[-3:] if child.stderr else []
    raise RuntimeError(
        f"could not start the coordination service on {coordinator}: "
        f"{' '.join(error) or 'no answer in time'}. Is the port free?"
    )


def _serve(coordinator: str, num_processes: int, jax_heartbeat: int, parent_pid: int):  # pragma: no cover - child
    from jax._src.lib import _jax

    host, port = coordinator.rsplit(":", 1)
    loopback = host in ("127.0.0.1", "localhost", "::1", "[::1]")
    bind = f"{'127.0.0.1' if host == 'localhost' else host}:{port}" if loopback else f"[::]:{port}"
    try:
        service = _jax.get_distributed_runtime_service(
            bind,
            num_processes,
            heartbeat_timeout=jax_heartbeat,
            shutdown_timeout=max(60, jax_heartbeat),
            recoverable=True,
        )
    except Exception as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    print("ready", flush=True)
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    # process 0 is gone (finished or lost): stay long enough for the others to notice and leave cleanly
    time.sleep(jax_heartbeat)
    del service
    os._exit(0)


# ---------------------------------------------------------------------------------------------------------------------
class DistributedContext:
    """A joined multi-process job: who we are, the heartbeat watchdog and the lost-peer exit."""

    def __init__(self, coordinator: str, num_processes: int, process_id: int, heartbeat_s: float, service):
        from jax._src import distributed as jax_distributed

        self.coordinator = coordinator
        self.num_processes = num_processes
        self.process_id = process_id
        self.heartbeat_s = heartbeat_s
        self._service = service
        self._client = jax_distributed.global_state.client
        self._stop = threading.Event()
        self._last_answer = time.monotonic()
        self._last_change: dict[int, float] = {}
        self._counters: dict[int, str | None] = {}
        self._done: set[int] = set()
        self._done_since: dict[int, float] = {}
        self._guarded = 0  # how many `guard` blocks (collectives that need every process) are running
        self._failed_peers: dict[int, str] = {}
        self._failure: str | None = None  # this process's own published error
        self._lock = threading.Lock()

    @property
    def peers(self) -> list[int]:
        return [q for q in range(self.num_processes) if q != self.process_id]

    # -- heartbeat ------------------------------------------------------------------------------------------------
    def start(self):
        try:
            self._client.wait_at_barrier("samplax_start", int(max(60.0, 10 * self.heartbeat_s) * 1000))
        except Exception as err:
            self._exit(f"not every process of the job arrived at {self.coordinator} in time ({err})")
        now = time.monotonic()
        self._last_answer = now
        self._last_change = {q: now for q in self.peers}
        threading.Thread(target=self._beat, name="samplax-heartbeat", daemon=True).start()
        threading.Thread(target=self._watch, name="samplax-watchdog", daemon=True).start()

    def _beat(self):
        counter = 0
        while not self._stop.is_set():
            counter += 1
            try:
                self._client.key_value_set(f"samplax/heartbeat/{self.process_id}", str(counter), allow_overwrite=True)
                beats = dict(self._client.key_value_dir_get("samplax/heartbeat/"))
                done = dict(self._client.key_value_dir_get("samplax/done/"))
                failed = dict(self._client.key_value_dir_get(FAILED_KEY))
            except Exception:  # the service did not answer: the watchdog judges by the silence
                time.sleep(self.heartbeat_s / 10)
                continue
            now = time.monotonic()
            with self._lock:
                self._last_answer = now
                for q in self.peers:
                    value = beats.get(f"samplax/heartbeat/{q}")
                    if value != self._counters.get(q):
                        self._counters[q] = value
                        self._last_change[q] = now
                    if f"samplax/done/{q}" in done:
                        self._done.add(q)
                        self._done_since.setdefault(q, now)
                    if f"{FAILED_KEY}{q}" in failed:
                        self._failed_peers[q] = failed[f"{FAILED_KEY}{q}"]
            self._stop.wait(self.heartbeat_s / 5)

    def _watch(self):
        while not self._stop.wait(self.heartbeat_s / 10):
            verdict = self.lost_peer()
            # a process that failed itself exits with its own status and message, not its peers'
            if verdict is not None and not self._stop.is_set() and self._failure is None:
                self._exit(verdict)

    def lost_peer(self) -> str | None:
        """A sentence naming the failed or lost peer, or None while every peer is alive."""
        now = time.monotonic()
        with self._lock:
            if self._failed_peers:  # a published error says more than the silence that follows it
                q = min(self._failed_peers)
                return f"process {q} of {self.num_processes} failed: {self._failed_peers[q].rstrip('.')}"
            if self._guarded:
                # a peer that reached its end cannot join the collectives this process is still running (every
                # process runs the same ones); the margin covers this process's own way out of its last one
                for q, since in sorted(self._done_since.items()):
                    if now - since > self.heartbeat_s:
                        return (
                            f"process {q} of {self.num_processes} ended its part of the job {now - since:.1f} s "
                            "ago (its program finished or called shutdown) while this process still needs it "
                            "for collectives"
                        )
            if now - self._last_answer > self.heartbeat_s:
                return (
                    f"lost the coordination service at {self.coordinator} (run by process 0): no answer for "
                    f"{now - self._last_answer:.1f} s"
                )
            for q in self.peers:
                if q not in self._done and now - self._last_change[q] > self.heartbeat_s:
                    return (
                        f"lost process {q} of {self.num_processes}: no heartbeat for "
                        f"{now - self._last_change[q]:.1f} s (killed, stopped or cut off)"
                    )
        return None

    def _exit(self, reason: str):
        message = (
            f"samplax: process {self.process_id}: {reason}. The distributed run cannot continue without it; "
            f"exiting with status {EXIT_LOST_PEER}. Restart the job (all processes)."
        )
        try:
            sys.stdout.flush()
            print(message, file=sys.stderr, flush=True)
        finally:
            os._exit(EXIT_LOST_PEER)

    def fail(self, error: str):
        """Publish this process's error so that the peers exit with it, and leave without the finishing barrier.

        The error goes under ``samplax/failed/{process_id}``, once, with a bounded wait.
        """
        with self._lock:
            if self._failure is not None:
                return
            self._failure = error

        def publish():
            with contextlib.suppress(Exception):  # the service is gone: the peers will see the silence instead
                self._client.key_value_set(f"{FAILED_KEY}{self.process_id}", error, allow_overwrite=True)

        # an unanswered RPC must not keep this process from exiting
        thread = threading.Thread(target=publish, name="samplax-report-failure", daemon=True)
        thread.start()
        thread.join(timeout=min(10.0, self.heartbeat_s))

    # -- collectives ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def guard(self):
        with self._lock:
            self._guarded += 1
        try:
            yield
        except KeyboardInterrupt:
            raise
        except Exception as err:
            if not _looks_like_lost_peer(err):
                raise
            deadline = time.monotonic() + 1.5 * self.heartbeat_s
            while time.monotonic() < deadline:
                verdict = self.lost_peer()
                if verdict is not None:
                    self._exit(f"{verdict}; a collective failed: {_first_line(err)}")
                time.sleep(self.heartbeat_s / 20)
            self._exit(f"a collective with the other processes failed: {_first_line(err)}")
        finally:
            with self._lock:
                self._guarded -= 1

    def finish(self):
        """Leave cleanly: wait for every process to finish, shut the clients down, then stop the coordination service.

        Process 0 shuts down last, once the others have left.
        """
        import jax

        if self._failure is not None:
            # the peers exit on the published error; the barrier and JAX's shutdown would wait for them in vain. The
            # coordination service child (process 0) outlives this process long enough for them to read the error.
            self._stop.set()
            return
        client = self._client
        try:
            client.key_value_set(f"samplax/done/{self.process_id}", "1", allow_overwrite=True)
            client.wait_at_barrier("samplax_finish", int(max(60.0, 10 * self.heartbeat_s) * 1000))
        except Exception as err:
            self._exit(f"a peer did not reach the end of the job ({_first_line(err)})")
        self._stop.set()
        if self.process_id == 0:
            deadline = time.monotonic() + max(30.0, 2 * self.heartbeat_s)
            while time.monotonic() < deadline:
                try:
                    if not client.get_live_nodes(self.peers):
                        break
                except Exception:
                    break
                time.sleep(0.05)
        try:
            jax.distributed.shutdown()
        except Exception:
            pass
        if self._service is not None:
            self._service.terminate()
            try:
                self._service.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self._service.kill()


def _looks_like_lost_peer(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}".lower()
    return any(
        word in text
        for word in (
            "gloo",
            "connection closed",
            "connection reset",
            "unavailable",
            "socket closed",
            "broken pipe",
            "nccl",
            "collective",
        )
    )


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


if __name__ == "__main__":  # pragma: no cover - the coordination service child
    if len(sys.argv) == 6 and sys.argv[1] == "serve":
        _serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        print(
            "usage: python -m samplax.infer.distributed serve HOST:PORT NUM_PROCESSES HEARTBEAT PARENT_PID",
            file=sys.stderr,
        )
        sys.exit(2)
