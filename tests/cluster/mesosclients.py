"""Third-party Mesos clients from PyPI, unmodified, each in its own venv under the cache directory
(two of them install the same top-level module), installed here so a fresh machine needs nothing else.

- pymesos 0.3.15: its dependency http-parser 0.9.0 ships a C extension that no longer compiles on
  Python 3.11 and a pure-Python parser it falls back to; http-parser is built without the extension
  (its setup.py, one argument changed before `pip install`), pymesos itself is installed as published.
- mesoshttp 0.4.2: as published.
- avmesos-cli 1.3.0 (the Apache Mesos CLI, packaged): declares Python >= 3.12 and pins build tools it
  does not use at run time (tox, PyInstaller); installed with --no-deps --ignore-requires-python and
  the libraries it imports.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("MESOSKUBE_CACHE") or Path.home() / ".cache" / "mesoskube")
CLIENTS = {
    "pymesos": "pymesos-0.3.15",
    "mesoshttp": "mesoshttp-0.4.2",
    "mesos-cli": "avmesos-cli-1.3.0",
}
SCRIPTS = Path(__file__).parent / "mesos_clients"


def _pip(venv: Path, *args: str) -> None:
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *args],
        check=True,
        timeout=600,
    )


def _install(name: str, venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    if name == "pymesos":
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    str(venv / "bin" / "pip"),
                    "download",
                    "-q",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "-d",
                    tmp,
                    "http-parser==0.9.0",
                ],
                check=True,
                timeout=300,
            )
            with tarfile.open(next(Path(tmp).glob("http-parser-*.tar.gz"))) as tar:
                tar.extractall(tmp, filter="data")
            src = next(p for p in Path(tmp).iterdir() if p.is_dir())
            setup = src / "setup.py"
            text = setup.read_text()
            assert "run_setup(not IS_PYPY)" in text, "http-parser's setup.py changed; update this recipe"
            setup.write_text(text.replace("run_setup(not IS_PYPY)", "run_setup(False)"))
            _pip(venv, str(src))
        _pip(venv, "pymesos==0.3.15")
    elif name == "mesoshttp":
        _pip(venv, "mesoshttp==0.4.2")
    elif name == "mesos-cli":
        _pip(venv, "--no-deps", "--ignore-requires-python", "avmesos-cli==1.3.0")
        _pip(venv, "docopt", "requests", "toml", "parse", "tenacity", "six", "ujson", "kazoo", "Pygments")


def client_venv(name: str) -> Path:
    """The venv of one client, installed once per machine (a file lock serialises parallel runs)."""
    venv = CACHE / "mesos-clients" / CLIENTS[name]
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".installed").exists():
            if venv.exists():
                subprocess.run(["rm", "-rf", str(venv)], check=True)
            _install(name, venv)
            (venv / ".installed").touch()
    return venv


def python(name: str) -> str:
    return str(client_venv(name) / "bin" / "python")
