"""Create or update the development virtual environment, only when its inputs changed.

The venv is keyed by a hash of pyproject.toml and requirements/*.txt, stored
inside it. When the hash matches, nothing is installed; the package itself is always
(re-)installed in editable mode, which is quick and offline.

Usage: python scripts/ensure_venv.py VENV_DIR EXTRAS
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
# Installed without their declared dependencies; the file says why for each.
NO_DEPS = ROOT / "requirements" / "no-deps.txt"
INPUTS = [ROOT / "pyproject.toml", CONSTRAINTS, NO_DEPS]


def main() -> int:
    """Bring the venv up to date; return the exit status."""
    target, extras = Path(sys.argv[1]).resolve(), sys.argv[2]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in INPUTS) + extras.encode()).hexdigest()
    stamp = target / ".onnxbridge-requirements"
    python = target / "bin" / "python"
    if not python.exists():
        print(f"creating virtual environment {target}", flush=True)
        venv.create(target, with_pip=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    if not stamp.exists() or stamp.read_text() != digest:
        print(f"installing onnxbridge[{extras}] and its dependencies into {target}", flush=True)
        constraints = ["-c", str(CONSTRAINTS)]
        subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "install", *constraints, "-e", f"{ROOT}[{extras}]"], check=True)
        if "dev" in extras.split(","):  # development-only packages; a core-only venv has none
            subprocess.run([*pip, "install", *constraints, "--no-deps", "-r", str(NO_DEPS)], check=True)
        stamp.write_text(digest)
    else:
        print(f"reusing {target} (requirements unchanged)", flush=True)
        subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "-e", str(ROOT)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
