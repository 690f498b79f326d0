"""Create or update the development virtual environment, only when its inputs changed.

The venv is keyed by a hash of pyproject.toml and requirements/*.txt, stored
inside it. When the hash matches, nothing is installed; the package itself is always
(re-)installed in editable mode, which is quick and offline.

Usage: python scripts/ensure_venv.py VENV_DIR EXTRAS [OVERRIDES]

OVERRIDES is a constraints file whose pins replace constraints.txt's for the packages it names
(the vision venv's torch and torchvision).
"""

from __future__ import annotations

import hashlib
import re
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
    overrides = Path(sys.argv[3]).resolve() if len(sys.argv) > 3 else None
    inputs = [*INPUTS, *([overrides] if overrides else [])]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in inputs) + extras.encode()).hexdigest()
    stamp = target / ".onnxbridge-requirements"
    python = target / "bin" / "python"
    if not python.exists():
        print(f"creating virtual environment {target}", flush=True)
        venv.create(target, with_pip=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    if not stamp.exists() or stamp.read_text() != digest:
        print(f"installing onnxbridge[{extras}] and its dependencies into {target}", flush=True)
        constraints = ["-c", str(merged(target, overrides) if overrides else CONSTRAINTS)]
        subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "install", *constraints, "-e", f"{ROOT}[{extras}]"], check=True)
        if "dev" in extras.split(","):  # development-only packages; a core-only venv has none
            subprocess.run([*pip, "install", *constraints, "--no-deps", "-r", str(NO_DEPS)], check=True)
        stamp.write_text(digest)
    else:
        print(f"reusing {target} (requirements unchanged)", flush=True)
        subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "-e", str(ROOT)], check=True)
    return 0


def merged(target: Path, overrides: Path) -> Path:
    """constraints.txt with the packages ``overrides`` pins replaced by its pins, written into ``target``."""
    name = re.compile(r"^\s*([A-Za-z0-9_.\-]+)")

    def pins(path: Path) -> dict[str, str]:
        lines = (line.strip() for line in path.read_text().splitlines())
        return {
            m.group(1).lower(): line for line in lines if line and not line.startswith("#") and (m := name.match(line))
        }

    combined = {**pins(CONSTRAINTS), **pins(overrides)}
    path = target / "constraints-merged.txt"
    path.write_text("\n".join(combined.values()) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
