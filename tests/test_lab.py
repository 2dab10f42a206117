"""`make lab`: the students' JupyterLab, started as the Makefile starts it, checked over HTTP.

The repository is the root (so the chapters' links to exercises/ resolve), the browser opens
at the index, nbgrader's instructor tools are off, and the lab asks no outside server for news
or extensions.  (What a student sees in the browser is tested in the browser tests.)
"""
import json
import os
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "course-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str, str]:
    """(status, final URL, body) without following redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=30) as r:
            return r.status, r.url, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location", ""), ""


@pytest.fixture(scope="module")
def lab():
    """The `make lab` recipe (as make prints it), on a free local port, without a browser."""
    recipe = subprocess.run(["make", "-s", "-n", "lab"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip().splitlines()[-1]
    port = _free_port()
    command = (f"{recipe} --no-browser --ip=127.0.0.1 --port={port} "
               f"--ServerApp.token={TOKEN} --ServerApp.port_retries=0")
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_CONFIG_PATH"}
    proc = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if proc.poll() is not None:
                pytest.fail(f"`make lab` exited: {proc.stderr.read()[-2000:]}")
            try:
                if _get(f"{base}/api/status?token={TOKEN}")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("`make lab` did not answer within 60 s")
        yield base, recipe
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_recipe_opens_the_index_with_the_repository_as_root(lab):
    base, recipe = lab
    assert "chapters/00_index.ipynb" in recipe and "root_dir" in recipe
    status, location, _ = _get(f"{base}/?token={TOKEN}")
    assert status == 302 and "/lab/tree/chapters/00_index.ipynb" in location
    listing = json.loads(_get(f"{base}/api/contents?token={TOKEN}")[2])
    names = {item["name"] for item in listing["content"]}
    assert {"chapters", "exercises", "solutions", "course_lib"} <= names
    # the link at the end of every chapter, from chapters/, resolves in this root
    assert _get(f"{base}/api/contents/exercises/ch01/ch01_exercises.ipynb?token={TOKEN}&content=0")[0] == 200


def test_instructor_tools_are_off_and_nothing_is_fetched_from_outside(lab):
    base, _ = lab
    assert _get(f"{base}/formgrader?token={TOKEN}")[0] == 404  # nbgrader's server extensions
    page = _get(f"{base}/lab?token={TOKEN}")[2]
    config = json.loads(page.split('id="jupyter-config-data" type="application/json">', 1)[1]
                        .split("</script>", 1)[0])
    assert "@jupyter/nbgrader" in config["disabledExtensions"]
    assert "@jupyterlab/apputils-extension:announcements" in config["disabledExtensions"]
    assert json.loads(_get(f"{base}/lab/api/news?token={TOKEN}")[2]) == {"news": []}
    status, _, body = _get(f"{base}/lab/api/extensions?token={TOKEN}")
    assert status == 200  # the read-only extension manager lists what is installed, asks no index


def test_instructor_lab_keeps_nbgrader():
    recipe = subprocess.run(["make", "-s", "-n", "lab-instructor"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    assert "lab_config" not in recipe and "root_dir" in shlex.join(shlex.split(recipe))
