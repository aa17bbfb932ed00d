"""Install the test oracle that cannot live in the test venv: transformers 4.57 for NEZHA.

transformers 5 dropped NezhaModel, and the test venv holds transformers 5, so 4.57 goes into a
side folder inside the repository, `.oracles/transformers4` (git-ignored). Only the oracle worker
of tests/test_nezha_parity.py puts it on its path; it shares the venv's torch, hence --no-deps.
Run it in the test venv, from anywhere:

    python tests/scripts/install_oracles.py

which runs `pip install --no-deps --target .oracles/transformers4 <REQUIREMENTS>` in the
repository root. Needs the package index once; the tests themselves never touch the network.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRANSFORMERS4 = ".oracles/transformers4"  # relative to ROOT; the tests' default
# transformers 4.57 and what it imports whose venv versions (pinned for transformers 5) it rejects
REQUIREMENTS = ["transformers==4.57.6", "huggingface_hub==0.36.2", "tokenizers==0.22.2",
                "requests", "certifi", "charset_normalizer", "urllib3", "idna"]


def pip_command(target: str = TRANSFORMERS4) -> list[str]:
    """The pip arguments that install the oracle into `target`."""
    return ["pip", "install", "--no-deps", "--upgrade", "--target", target, *REQUIREMENTS]


def installed(target: Path) -> bool:
    """Whether `target` already holds the pinned transformers."""
    version = REQUIREMENTS[0].split("==")[1]
    return (target / f"transformers-{version}.dist-info").is_dir()


def main() -> int:
    target = ROOT / TRANSFORMERS4
    if installed(target):
        print(f"NEZHA oracle: {REQUIREMENTS[0]} already in {TRANSFORMERS4}")
        return 0
    command = [sys.executable, "-m", *pip_command()]
    print("NEZHA oracle:", " ".join(command[2:]), flush=True)
    return subprocess.run(command, cwd=ROOT, stdin=subprocess.DEVNULL).returncode


if __name__ == "__main__":
    sys.exit(main())
