"""Start, drive and stop a real ComfyUI server (headless, loopback, CPU) with CacheKit installed.

Used by the demo and by the end-to-end tests. The server gets its own base directory; the pack is
linked into its custom_nodes folder under the name CacheKit. Stopped by its own PID, always.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from harness.comfy_runtime import COMFY_DIR, REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, base_dir: Path, extra_node_dirs: tuple[Path, ...] = (), port: int | None = None,
                 python: str = sys.executable):
        self.base = Path(base_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.log_path = self.base / "server.log"
        nodes = self.base / "custom_nodes"
        nodes.mkdir(parents=True, exist_ok=True)
        for src, name in [(REPO, "CacheKit"), *[(Path(d), Path(d).name) for d in extra_node_dirs]]:
            link = nodes / name
            if not link.exists():
                link.symlink_to(src, target_is_directory=True)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> "ComfyServer":
        cmd = [self.python, str(COMFY_DIR / "main.py"), "--cpu", "--listen", "127.0.0.1",
               "--port", str(self.port), "--base-directory", str(self.base),
               "--database-url", "sqlite:///:memory:", "--disable-auto-launch", "--disable-api-nodes"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=str(COMFY_DIR), stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}; log:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout}s; log:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)   # our own process group, by PID
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        self._log.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- HTTP ----------------------------------------------------------------------------------
    def get(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" else body

    def post(self, path: str, payload: dict, timeout: float = 30) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def queue(self, prompt: dict, client_id: str | None = None) -> str:
        status, body = self.post("/prompt", {"prompt": prompt, "client_id": client_id or str(uuid.uuid4())})
        if status != 200:
            raise RuntimeError(f"POST /prompt -> {status}: {json.dumps(body)[:2000]}")
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") != "success":
                    raise RuntimeError(f"prompt failed: {json.dumps(entry['status'])[:4000]}")
                return entry
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server died; log:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s")

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        return self.wait(self.queue(prompt), timeout)

    def run_watching(self, prompt: dict, event: str, timeout: float = 600) -> tuple[dict, list[dict]]:
        """Run a prompt as the frontend does, connected to the websocket; returns its history entry and the
        data of every `event` message sent to this client while it ran."""
        import asyncio
        import aiohttp
        client_id = str(uuid.uuid4())

        async def watch() -> tuple[dict, list[dict]]:
            seen = []
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"{self.url}/ws?clientId={client_id}") as ws:
                    prompt_id = await asyncio.to_thread(self.queue, prompt, client_id)
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        data = json.loads(msg.data)
                        if data["type"] == event:
                            seen.append(data["data"])
                        if data["type"] in ("execution_success", "execution_error") and \
                                data["data"].get("prompt_id") == prompt_id:
                            break
            return await asyncio.to_thread(self.wait, prompt_id, timeout), seen
        return asyncio.run(asyncio.wait_for(watch(), timeout))


def execution_seconds(history_entry: dict) -> float:
    """Server-side time from execution_start to execution_success, from the history's messages."""
    stamps = {name: data.get("timestamp") for name, data in history_entry["status"].get("messages", [])}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0
