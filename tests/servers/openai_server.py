"""Start a real OpenAI-compatible server on a free 127.0.0.1 port for a local model folder, and stop it.

vLLM's server (``python -m vllm.entrypoints.openai.api_server``) is used when vLLM is importable by this Python
or by the interpreter named in ``HARNESS_VLLM_PYTHON``; otherwise ``transformers serve`` (transformers[serving]).
``transformers serve`` pins the model to its folder path: the served name is the path, and its completions
endpoint ignores ``echo``/``logprobs`` (no prompt log-probabilities), so log-likelihood tests need vLLM.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_python() -> str | None:
    """An interpreter that can import vllm: this one, else $HARNESS_VLLM_PYTHON."""
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    other = os.environ.get("HARNESS_VLLM_PYTHON")
    if other and Path(other).exists():
        ok = subprocess.run([other, "-c", "import vllm"], capture_output=True, timeout=120).returncode == 0
        return other if ok else None
    return None


@dataclass
class OpenAIServer:
    kind: str  # "vllm" | "transformers"
    base_url: str
    served_model: str
    proc: subprocess.Popen
    log_path: Path
    supports_prompt_logprobs: bool = field(default=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_openai_server(model_dir: Path, log_dir: Path, served_name: str = "tiny", startup_s: float = 300,
                        prefer: str | None = None) -> OpenAIServer:
    """Start the server and wait until ``/v1/models`` answers (or raise with the log's tail)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    py = vllm_python() if prefer in (None, "vllm") else None
    log_path = log_dir / f"openai-server-{port}.log"
    if py is not None:
        kind, served = "vllm", served_name
        cmd = [py, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--served-model-name",
               served_name, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
               "--max-model-len", "1024",
               # On CPU this is the share of the machine's memory vLLM reserves (default 0.92: it refuses to start
               # beside anything else); the tiny model needs a sliver.
               "--gpu-memory-utilization", "0.15"]
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    else:
        exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
        if exe is None:
            raise RuntimeError("neither vllm nor `transformers serve` is available; pip install 'transformers[serving]'")
        kind, served = "transformers", str(model_dir)
        cmd = [exe, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
               "--dtype", "float32", "--log-level", "warning"]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(log_dir),
                            start_new_session=True)
    log.close()
    server = OpenAIServer(kind, f"http://127.0.0.1:{port}/v1", served, proc, log_path, kind == "vllm")
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=2) as r:
                if r.status == 200 and json.loads(r.read()).get("data"):
                    return server
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"{kind} server did not answer within {startup_s:.0f}s:\n{server.log_tail()}")
