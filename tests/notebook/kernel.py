"""A real Jupyter kernel for tests: this venv's Python, isolated Jupyter/IPython dirs.

``kernel_manager(tmp_path)`` writes a kernelspec whose argv is
``sys.executable -m ipykernel_launcher`` (so the kernel is this venv's
ipykernel, whatever kernelspecs the machine has) and returns an unstarted
``KernelManager``.  :class:`Kernel` drives a started one the way a front-end
does: ``execute`` a cell and collect what it published, send a raw
``comm_msg`` (a widget click), wait until the kernel handled it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

KERNEL_NAME = "yukkuri-nb-test"
TIMEOUT = 120  # seconds a single cell may take on a loaded machine before the test gives up


def kernel_manager(tmp_path: Path) -> KernelManager:
    """An unstarted KernelManager for this interpreter's ipykernel, with its own runtime dirs."""
    spec_dir = tmp_path / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "yukkuri_nb tests",
                "language": "python",
                "env": {
                    "IPYTHONDIR": str(tmp_path / "ipython"),
                    "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
                    "MPLBACKEND": "Agg",
                    "PYTHONWARNINGS": "ignore::DeprecationWarning",
                },
            }
        )
    )
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)
    # Connection files under tmp, not the user's runtime dir.
    km.connection_file = str(tmp_path / "runtime" / "kernel-test.json")
    os.makedirs(tmp_path / "runtime", exist_ok=True)
    return km


@dataclass
class CellOutput:
    """What one execute request published."""

    stdout: str = ""
    stderr: str = ""
    data: list[dict[str, Any]] = field(default_factory=list)
    comm_opens: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def check(self) -> "CellOutput":
        if self.error:
            raise AssertionError(f"cell raised in the kernel:\n{self.error}\nstdout:\n{self.stdout}")
        return self

    def json(self) -> Any:
        """The last stdout line, parsed as JSON (cells print their findings as JSON)."""
        return json.loads(self.stdout.strip().splitlines()[-1])


class Kernel:
    """A started kernel and its blocking client."""

    def __init__(self, tmp_path: Path) -> None:
        self.km = kernel_manager(tmp_path)
        self.km.start_kernel(cwd=str(tmp_path))
        self.kc = self.km.blocking_client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)
        self.comm_opens: list[dict[str, Any]] = []  # every comm_open seen on iopub, in order

    def execute(self, code: str) -> CellOutput:
        msg_id = self.kc.execute(code)
        out = self._collect(msg_id)
        reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        return out

    def send_comm_msg(self, comm_id: str, data: dict[str, Any]) -> None:
        """Send ``comm_msg`` on the shell channel, exactly as a browser does; wait until it was handled."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)
        self._collect(msg["header"]["msg_id"])

    def click(self, comm_id: str) -> None:
        """What ipywidgets' front-end sends when a Button is clicked."""
        self.send_comm_msg(comm_id, {"method": "custom", "content": {"event": "click"}})

    def _collect(self, msg_id: str) -> CellOutput:
        out = CellOutput()
        while True:
            msg = self.kc.get_iopub_msg(timeout=TIMEOUT)
            kind = msg["msg_type"]
            content = msg["content"]
            if kind == "comm_open":
                self.comm_opens.append(content)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if kind == "status" and content["execution_state"] == "idle":
                return out
            if kind == "stream":
                if content["name"] == "stdout":
                    out.stdout += content["text"]
                else:
                    out.stderr += content["text"]
            elif kind in ("execute_result", "display_data"):
                out.data.append(content["data"])
            elif kind == "comm_open":
                out.comm_opens.append(content)
            elif kind == "error":
                out.error = "\n".join(content["traceback"])

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)
