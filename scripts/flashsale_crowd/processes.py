"""The children the crowd starts: chaos's `Process` (a log file per child, stop() escalating to SIGKILL) with
two differences the crowd needs, and `Processes`, every child still running, so that the command line can
stop them all at the end (also on an error, Ctrl-C or SIGTERM). Also the CPU seconds and open fds of a
child, read from /proc.

`start_piped` (crowd.procs_start_wrk for scripts/throughput.py) starts a bare `subprocess.Popen` whose output
its caller reads from a pipe; `Processes` stops those too, as chaos stops its processes (`Adopted`)."""

import os
import subprocess

from flashsale_chaos.processes import Process

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Child(Process):
    """chaos's Process, except that an `env` given is the child's whole environment (the instances get none
    of the caller's FLASHSALE_* or MONGO_URI; chaos's Process adds `env` to the caller's environment) and
    that the log file can be named (wrk's output is `wrk.out`)."""

    def __init__(self, name, argv, workdir, env=None, log_name=None):
        self.log_name = log_name or name + ".log"
        super().__init__(name, argv, workdir, env)

    def start(self):
        log = open(os.path.join(self.workdir, self.log_name), "ab")
        try:
            self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=self.env, cwd=self.workdir, start_new_session=True)
        finally:
            log.close()

    @property
    def pid(self):
        return self.popen.pid

    @property
    def returncode(self):
        return self.popen.returncode


class Adopted(Process):
    """A bare Popen started elsewhere (start_piped), stopped as chaos stops its processes; never restarted."""

    def __init__(self, popen):  # not Process.__init__: that would start another process
        self.name, self.argv, self.workdir, self.env = getattr(popen, "crowd_name", "child"), popen.args, None, None
        self.popen = popen

    def start(self):
        raise RuntimeError("%s was started elsewhere and is not restarted" % self.name)


class Processes:
    """Every child this script starts (Child, or a bare Popen from start_piped); stop_all() stops them
    (SIGTERM, SIGKILL after a grace period)."""

    def __init__(self):
        self.children = []

    def start(self, name, argv, workdir, env=None, log_name=None):
        child = Child(name, argv, workdir, env, log_name)
        self.children.append(child)
        return child

    def stop(self, child, grace=10.0):
        """Stops the child if it still runs (a child that ended is only forgotten)."""
        (child if isinstance(child, Process) else Adopted(child)).stop(grace)
        if child in self.children:
            self.children.remove(child)

    def stop_all(self):
        for child in reversed(list(self.children)):
            try:
                self.stop(child)
            except Exception:  # noqa: BLE001 - keep stopping the others
                try:
                    (child.popen if isinstance(child, Process) else child).kill()
                except OSError:
                    pass


def start_piped(procs, argv, workdir):
    """wrk (or any command) with its output in a pipe for the caller to read (`communicate()`), registered
    with `procs` so that stop_all() stops it too."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=workdir, start_new_session=True)
    child.crowd_name = "wrk"
    procs.children.append(child)
    return child


def cpu_seconds(pid):
    """utime + stime of a live process (seconds), None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None
