"""Child processes of the harness: `Process` (a command with its output in a log file, stopped with an
escalation to SIGKILL) and `TCPProxy` (the loopback proxy in front of Redis that a scenario can cut and heal)."""

import os
import signal
import socket
import subprocess
import threading


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
    """A loopback TCP proxy the harness can cut (drop every connection, refuse new ones) and heal."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = set()
        self.is_cut = False
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.is_cut:
                    client.close()
                    continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.update([client, upstream])
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
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
                self.connections.discard(source)
                self.connections.discard(sink)

    def cut(self):
        with self.lock:
            self.is_cut = True
            victims = list(self.connections)
        for connection in victims:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def heal(self):
        with self.lock:
            self.is_cut = False

    def close(self):
        self.closed = True
        self.cut()
        self.listener.close()
