"""A real `elide serve` for the end-to-end checks: started on 127.0.0.1
with an ephemeral port over a fresh data directory, its banner read for the
address, the capture token and the personal API key; stopped with SIGTERM.
"""

import os
import re
import signal
import subprocess
import tempfile
import threading


class Server:
    def __init__(self, elide, *args):
        self.dir = tempfile.TemporaryDirectory(prefix="elide-e2e-")
        self.log_path = os.path.join(self.dir.name, "server.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [elide, "serve", "--data-dir", os.path.join(self.dir.name, "data"),
             "--bind", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
            env={**os.environ, "ELIDE_LOG": os.environ.get("ELIDE_LOG", "warn")},
        )
        banner = []

        def read_banner():
            for line in self.proc.stdout:
                banner.append(line)
                if line.startswith("Elide listening on "):
                    break

        reader = threading.Thread(target=read_banner, daemon=True)
        reader.start()
        reader.join(timeout=120)
        if reader.is_alive():
            self.proc.kill()
            raise RuntimeError(f"elide serve printed no address in 120 s:\n{''.join(banner)}\n{self.logs()}")
        text = "".join(banner)
        m = re.search(r"Elide listening on (http://\S+)", text)
        if not m:
            self.stop()
            raise RuntimeError(f"elide serve did not start:\n{text}\n{self.logs()}")
        self.base = m.group(1)
        self.token = re.search(r"\bphc_\w+", text).group(0)
        self.key = re.search(r"\bphx_\w+", text).group(0)
        self.project = int(re.search(r"Created project (\d+)", text).group(1))
        # Keep reading stdout so that the server never blocks on it.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def api(self, path=""):
        return f"{self.base}/api/projects/{self.project}{path}"

    def auth(self):
        return {"Authorization": f"Bearer {self.key}"}

    def logs(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-20000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.log.close()
        self.dir.cleanup()
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        code = self.stop()
        if exc[0] is None and code != 0:
            raise RuntimeError(f"elide serve exited with {code} after SIGTERM")
