"""Install the test oracles that cannot live in the test venv: older transformers for dropped models.

transformers 5 dropped NezhaModel and TransfoXLLMHeadModel, and the test venv holds transformers 5,
so older releases go into side folders inside the repository (git-ignored):

- `.oracles/transformers4`: transformers 4.57, NEZHA's oracle (tests/test_nezha_parity.py);
- `.oracles/transformers435`: transformers 4.35, Transformer-XL's (tests/test_transfo_xl_parity.py):
  4.35 is the last release with TransfoXLLMHeadModel outside `models/deprecated`, as the model
  was last maintained.

Only each test's oracle worker puts its folder on its path; they share the venv's torch, hence
--no-deps, with the versions of what transformers checks at import pinned beside it. Run it in the
test venv, from anywhere:

    python tests/scripts/install_oracles.py

which runs `pip install --no-deps --target <folder> <requirements>` for each folder missing in the
repository root. Needs the package index once; the tests themselves never touch the network.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRANSFORMERS4 = ".oracles/transformers4"  # relative to ROOT; the NEZHA tests' default
# transformers 4.57 and what it imports whose venv versions (pinned for transformers 5) it rejects
REQUIREMENTS = ["transformers==4.57.6", "huggingface_hub==0.36.2", "tokenizers==0.22.2",
                "requests", "certifi", "charset_normalizer", "urllib3", "idna"]
TRANSFORMERS435 = ".oracles/transformers435"  # relative to ROOT; the Transformer-XL tests' default
# transformers 4.35 checks tokenizers >= 0.14, < 0.15 and huggingface_hub >= 0.16.4, < 1.0 at import
REQUIREMENTS_435 = ["transformers==4.35.2", "huggingface_hub==0.17.3", "tokenizers==0.14.1",
                    "requests", "certifi", "charset_normalizer", "urllib3", "idna", "fsspec"]
# (what it is for, folder, requirements)
ORACLES = [("NEZHA oracle", TRANSFORMERS4, REQUIREMENTS),
           ("Transformer-XL oracle", TRANSFORMERS435, REQUIREMENTS_435)]


def pip_command(target: str = TRANSFORMERS4, requirements: list[str] | None = None) -> list[str]:
    """The pip arguments that install an oracle (by default NEZHA's) into `target`."""
    return ["pip", "install", "--no-deps", "--upgrade", "--target", target, *(requirements or REQUIREMENTS)]


def installed(target: Path, requirements: list[str] | None = None) -> bool:
    """Whether `target` already holds the pinned transformers of `requirements` (by default NEZHA's)."""
    version = (requirements or REQUIREMENTS)[0].split("==")[1]
    return (target / f"transformers-{version}.dist-info").is_dir()


def main() -> int:
    status = 0
    for what, folder, requirements in ORACLES:
        if installed(ROOT / folder, requirements):
            print(f"{what}: {requirements[0]} already in {folder}")
            continue
        command = [sys.executable, "-m", *pip_command(folder, requirements)]
        print(f"{what}:", " ".join(command[2:]), flush=True)
        status = status or subprocess.run(command, cwd=ROOT, stdin=subprocess.DEVNULL).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
