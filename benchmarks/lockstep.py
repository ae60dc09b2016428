"""Lockstep timing: several benchmark processes take turns, one timed window at a time.

On a 2-core machine whose speed drifts by ±30% over minutes (other tenants, other agents), two
configurations timed one after the other in separate runs are not comparable. Here every
configuration runs in its own process, all started together; each blocks before each timed window
until the parent gives it the turn, so exactly one runs at a time and consecutive windows of
different configurations are seconds apart. The parent rotates the order every round and records,
for each window, how much CPU the rest of the machine used meanwhile (from /proc/stat minus the
child's own CPU time): a window during which other processes used more than `max_foreign_cores` is
marked as shared.

Child side (no TensorFlow / PyTorch import here, so both venvs can use it):
    turn = Turnstile.from_env()     # None unless the parent runs this process in lockstep
    turn.wait()                     # before each timed window
    turn.done({"wall_s": ..., ...}) # after it
A Keras child can use `epoch_window_timer(examples_per_epoch)`: a callback that times every epoch
as one window (and takes its turn, when run in lockstep).
Parent side: `run(commands, env)` returns, per command, its windows (with the foreign CPU of each)
and its final stdout.
"""
import json
import os
import subprocess
import sys
import time

READY = "LOCKSTEP_READY"
DONE = "LOCKSTEP_DONE "
ENV_FLAG = "TFDGM_BENCH_LOCKSTEP"


def epoch_window_timer(examples_per_epoch, turn="env"):
    """A Keras callback timing each epoch as one window: `.wall` and `.cpu` (seconds of this
    process) per epoch; with a Turnstile (by default from the environment) each epoch waits for
    its turn and reports examples/s, wall seconds and cores busy. Keras is imported here only, so
    the module stays free of TensorFlow for the PyTorch children."""
    import keras

    turn = Turnstile.from_env() if turn == "env" else turn

    class EpochWindows(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.wall, self.cpu = [], []

        def on_epoch_begin(self, epoch, logs=None):
            if turn:
                turn.wait()
            t = os.times()
            self._wall, self._cpu = time.perf_counter(), t.user + t.system

        def on_epoch_end(self, epoch, logs=None):
            t = os.times()
            self.wall.append(time.perf_counter() - self._wall)
            self.cpu.append(t.user + t.system - self._cpu)
            if turn:
                turn.done({"examples_per_s": examples_per_epoch / self.wall[-1], "wall_s": self.wall[-1],
                           "cores_busy": self.cpu[-1] / self.wall[-1]})

    return EpochWindows()


class Turnstile:
    """The child's end: blocks on stdin until the parent says "go"."""

    def __init__(self, stream_in=None, stream_out=None):
        self._in = stream_in or sys.stdin
        self._out = stream_out or sys.stdout

    @classmethod
    def from_env(cls):
        return cls() if os.environ.get(ENV_FLAG) == "1" else None

    def wait(self):
        print(READY, file=self._out, flush=True)
        line = self._in.readline()
        if line.strip() != "go":
            raise SystemExit(f"lockstep: expected 'go' from the parent, got {line!r}")

    def done(self, record):
        print(DONE + json.dumps(record), file=self._out, flush=True)


def cpu_ticks():
    """(busy, total) jiffies of the whole machine from /proc/stat's first line."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def process_cpu_s(pid):
    """User + system CPU seconds of a process and its threads (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Child:
    def __init__(self, label, cmd, env):
        self.label, self.cmd = label, cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, bufsize=1)
        self.stdout, self.windows, self.error = [], [], None

    def read_until(self, marker):
        """Reads stdout lines until one starts with marker; returns it, or None at EOF."""
        for line in self.proc.stdout:
            if line.startswith(marker):
                return line.rstrip("\n")
            self.stdout.append(line)
        return None

    def fail(self, why):
        self.error = f"{why}; stderr tail:\n{self.proc.stderr.read()[-3000:]}"
        self.proc.kill()


def run(commands, env=None, max_foreign_cores=0.15, log=print):
    """Runs {label: argv} in lockstep until every child exits; returns {label: result}.

    result = {"windows": [child record + wall_s_parent, foreign_cores, shared, load_avg_1min, round],
              "stdout": lines the child printed outside the protocol, "error": None or text}.
    """
    env = dict(os.environ if env is None else env, **{ENV_FLAG: "1"})
    children = [_Child(label, cmd, env) for label, cmd in commands.items()]
    alive = []
    for child in children:  # warm-ups run concurrently; none of them is timed
        if child.read_until(READY) is None:
            child.fail("exited before its first window")
        else:
            alive.append(child)
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    rnd = 0
    while alive:
        order = alive[rnd % len(alive):] + alive[:rnd % len(alive)]
        if rnd % 2:
            order = order[::-1]
        for child in order:
            load = os.getloadavg()[0]
            busy0, _ = cpu_ticks()
            own0 = process_cpu_s(child.proc.pid)
            t0 = time.perf_counter()
            child.proc.stdin.write("go\n")
            child.proc.stdin.flush()
            line = child.read_until(DONE)
            wall = time.perf_counter() - t0
            if line is None:
                child.fail(f"exited during window {len(child.windows)}")
                alive.remove(child)
                continue
            busy1, _ = cpu_ticks()
            own = process_cpu_s(child.proc.pid) - own0
            foreign = max(0.0, (busy1 - busy0) / ticks_per_s - own) / wall
            record = json.loads(line[len(DONE):])
            record.update(wall_s_parent=wall, foreign_cores=foreign, shared=foreign > max_foreign_cores,
                          load_avg_1min=load, round=rnd)
            child.windows.append(record)
            log(f"  [{rnd}] {child.label:32s} {record.get('examples_per_s', 0):9.0f} ex/s  cores "
                f"{record.get('cores_busy', 0):.2f}  foreign {foreign:.2f}{'  SHARED' if record['shared'] else ''}")
            if child.read_until(READY) is None:  # no more windows: the child is finishing
                alive.remove(child)
        rnd += 1
    results = {}
    for child in children:
        if child.error is None:
            rest, err = child.proc.communicate()
            child.stdout.extend(rest.splitlines(keepends=True))
            if child.proc.returncode:
                child.error = f"exit status {child.proc.returncode}; stderr tail:\n{err[-3000:]}"
        results[child.label] = {"windows": child.windows, "stdout": child.stdout, "error": child.error}
    return results
