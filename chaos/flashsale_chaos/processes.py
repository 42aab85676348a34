"""Child processes of the harness: `Process` (a command with its output in a log file, stopped with an
escalation to SIGKILL) and `TCPProxy` (the loopback proxy in front of Redis that a scenario can cut, slow
and heal)."""

import os
import queue
import signal
import socket
import subprocess
import threading
import time


class Process:
    """A child process with its output in a log file; stop() escalates to SIGKILL after a grace period."""

    def __init__(self, name, argv, workdir, env=None):
        self.name, self.argv, self.workdir, self.env = name, argv, workdir, env
        self.popen = None
        self.start()

    def start(self):
        log = open(os.path.join(self.workdir, self.name + ".log"), "ab")
        env = dict(os.environ)
        env.update(self.env or {})
        self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, cwd=self.workdir, start_new_session=True)
        log.close()

    @property
    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig):
        if self.alive:
            os.kill(self.popen.pid, sig)

    def kill(self):
        if self.alive:
            self.popen.kill()
            self.popen.wait(10)

    def stop(self, grace=10.0):
        if not self.alive:
            return
        self.signal(signal.SIGCONT)
        self.popen.terminate()
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)

    def rss_bytes(self):
        try:
            with open("/proc/%d/status" % self.popen.pid) as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return 0
        return 0


class TCPProxy:
    """A loopback TCP proxy the harness can cut (drop every connection, refuse new ones) and heal, and slow
    (every chunk forwarded `delay` seconds after it arrived, in order, both ways).

    `cut(spare_pid=...)` spares one process: its connections stay up and it may open new ones (the client
    of each connection is found through /proc: the socket's inode among the process's descriptors), so a
    scenario can isolate a server from everybody but one client."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = {}  # client socket -> upstream socket
        self.is_cut = False
        self.spare_pid = None
        self.delay = 0.0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                refused = self.is_cut and not self._spared(client)
            if refused:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections[client] = upstream
            for source, sink in ((client, upstream), (upstream, client)):
                chunks = queue.Queue(maxsize=4096)  # bounded: a slow sink stalls its source
                threading.Thread(target=self._pump, args=(source, sink, chunks), daemon=True).start()
                threading.Thread(target=self._deliver, args=(source, sink, chunks), daemon=True).start()

    def _pump(self, source, sink, chunks):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                chunks.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        chunks.put((0.0, None))

    def _deliver(self, source, sink, chunks):
        try:
            while True:
                due, data = chunks.get()
                if data is None:
                    break
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()
            with self.lock:
                self.connections.pop(source, None)
                self.connections.pop(sink, None)

    def _spared(self, client):
        """Whether `client` (an accepted socket) belongs to the spared process. Called under the lock."""
        if self.spare_pid is None:
            return False
        try:
            return client_inode(client.getpeername()[1], self.port) in socket_inodes(self.spare_pid)
        except OSError:
            return False

    def cut(self, spare_pid=None):
        with self.lock:
            self.is_cut, self.spare_pid = True, spare_pid
            victims = [c for c in self.connections if not self._spared(c)]
            victims += [self.connections[c] for c in victims]
        for connection in victims:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(victims) // 2

    def heal(self):
        with self.lock:
            self.is_cut, self.spare_pid = False, None

    def close(self):
        self.closed = True
        self.cut()
        self.listener.close()


def client_inode(client_port, server_port):
    """The socket inode of the loopback connection from `client_port` to `server_port` (/proc/net/tcp)."""
    wanted = ":%04X" % client_port, ":%04X" % server_port
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(wanted[0]) and fields[2].endswith(wanted[1]):
                return fields[9]
    return None


def socket_inodes(pid):
    """The inodes of the sockets process `pid` holds open."""
    inodes = set()
    for descriptor in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, descriptor))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes
