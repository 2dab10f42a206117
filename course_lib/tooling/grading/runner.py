"""Runs one student notebook in a Jupyter kernel, inside the sandbox.

``python -m course_lib.tooling.grading.runner NOTEBOOK BOOT OUT LOG``: executes NOTEBOOK cell by cell
(the kernel starts in the current folder), with the recorder of :mod:`.recorder` installed
first (its settings in BOOT), and writes the outputs and a status to OUT.  Limits: a wall-clock
time per cell and per notebook and a size for the outputs kept (``--cell-timeout``,
``--notebook-timeout``, ``--max-output-bytes``).  A cell that runs out of time or a kernel that
dies ends the run; what ran until then is written.

This process shares the sandbox with the student's code, so OUT is untrusted: the grader only
takes outputs from it (filtered again) and a status text.
"""
from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

import nbformat

BOOT = """\
import json as _json, sys as _sys
_sys.path.insert(0, {here!r})
import recorder as _recorder
del _sys.path[0]
with open({boot!r}) as _fh:
    _settings = _json.load(_fh)
_recorder.install(get_ipython(), {log!r}, _settings["trusted"], _settings["names"])
del _json, _sys, _recorder, _fh, _settings
"""


def output_size(outputs) -> int:
    return len(json.dumps(outputs, ensure_ascii=False).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    parser.add_argument("boot")
    parser.add_argument("out")
    parser.add_argument("log")
    parser.add_argument("--cell-timeout", type=float, default=120)
    parser.add_argument("--notebook-timeout", type=float, default=600)
    parser.add_argument("--max-output-bytes", type=int, default=1 << 20)
    args = parser.parse_args(argv)

    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.read(args.notebook, as_version=4)
    boot = nbformat.v4.new_code_cell(BOOT.format(here=str(Path(__file__).resolve().parent), boot=args.boot, log=args.log))
    client = NotebookClient(nb, timeout=int(args.cell_timeout), kernel_name="python3",
                            allow_errors=True, interrupt_on_timeout=False, record_timing=False,
                            startup_timeout=120, resources={"metadata": {"path": "."}})
    result = {"status": "", "outputs": {}, "ran": []}
    budget = args.max_output_bytes

    def write():
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh)

    try:
        with client.setup_kernel():
            nb.cells.append(boot)  # nbclient stores the executed cell at its index: give it one
            client.execute_cell(boot, len(nb.cells) - 1)
            nb.cells.pop()
            start = time.monotonic()  # the notebook's time starts once its kernel is ready
            if any(o.get("output_type") == "error" for o in boot.outputs):
                result["status"] = "grader set-up failed in the kernel: " + \
                    "; ".join(f"{o.get('ename')}: {o.get('evalue')}" for o in boot.outputs)
                write()
                return 0
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                left = args.notebook_timeout - (time.monotonic() - start)
                if left <= 1:
                    result["status"] = f"timeout after {args.notebook_timeout:g} s (notebook); " \
                                       f"cells from cell {index + 1} on not run"
                    break
                client.timeout = int(max(1, min(args.cell_timeout, left)))
                notebook_limit = left < args.cell_timeout
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    limit = f"{args.notebook_timeout:g} s (notebook)" if notebook_limit \
                        else f"{args.cell_timeout:g} s in cell {index + 1}"
                    result["status"] = f"timeout after {limit}; later cells not run"
                    _keep(result, index, cell.outputs, budget)
                    break
                except DeadKernelError:
                    result["status"] = f"kernel died in cell {index + 1}{_death(client)}; " \
                                       "later cells not run"
                    _keep(result, index, cell.outputs, budget)
                    break
                budget = _keep(result, index, cell.outputs, budget)
                result["ran"].append(index)
                if not _alive(client):
                    result["status"] = f"kernel died in cell {index + 1}{_death(client)}; " \
                                       "later cells not run"
                    break
    except Exception as err:  # noqa: BLE001 - e.g. the kernel would not start
        if not result["status"]:
            result["status"] = f"kernel failed: {type(err).__name__}: {str(err)[:300]}"
    write()
    return 0


def _keep(result, index, outputs, budget):
    size = output_size(outputs)
    if size > budget:
        outputs = [{"output_type": "stream", "name": "stdout",
                    "text": f"[{size} bytes of output not kept: over the output limit]\n"}]
        size = 0
    result["outputs"][str(index)] = outputs
    return budget - size


def _alive(client) -> bool:
    from jupyter_core.utils import run_sync
    try:
        return bool(run_sync(client.km.is_alive)())
    except Exception:  # noqa: BLE001
        return False


def _death(client) -> str:
    try:
        code = client.km.provisioner.process.poll()
    except Exception:  # noqa: BLE001
        return ""
    if code is None:
        return ""
    if code < 0:
        sig = -code
        why = {signal.SIGXCPU: "CPU time limit reached", signal.SIGKILL: "killed",
               signal.SIGSEGV: "segmentation fault", signal.SIGXFSZ: "file size limit reached"}
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return f" ({name}{': ' + why[sig] if sig in why else ''})"
    return f" (exit code {code})"


if __name__ == "__main__":
    import sys
    del sys.path[0]  # run as a script: this folder's modules are not the student's to import
    raise SystemExit(main())
