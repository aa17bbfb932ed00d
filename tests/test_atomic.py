"""The one atomic writer: the target appears whole or not at all, with ordinary permissions."""
import os
import stat

import pytest

from plmkit.files import atomic_write


def test_file_appears_whole_with_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "sub" / "f.txt", lambda tmp: tmp.write_text("hello"))
    finally:
        os.umask(old)
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert os.listdir(path.parent) == ["f.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_a_writer_that_recreates_the_file_still_gets_the_umask_permissions(tmp_path):
    import torch
    from safetensors.torch import save_file

    def recreate(tmp):  # safetensors replaces the file and leaves it 0600
        tmp.unlink()
        save_file({"w": torch.zeros(2)}, str(tmp))
        os.chmod(tmp, 0o600)

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "model.safetensors", recreate)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_curves_trimmed_metrics_and_copied_tokenizer_files_get_the_umask_permissions(tmp_path):
    """Every file a run or a conversion leaves goes through the one writer (none stays 0600)."""
    import json

    pytest.importorskip("matplotlib")
    import plmkit
    from plmkit.conversion import _copy_tokenizer
    from plmkit.tokenizers import WordPieceTokenizer
    from plmkit.training.logs import plot_curves, truncate_metrics

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"split": "train", "step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3)))
    config = plmkit.ModelConfig(family="bert", vocab_size=30, hidden_size=8, num_layers=1, num_heads=2,
                                intermediate_size=8, max_position=16)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(0x4e00 + i) for i in range(25)]
    src = tmp_path / "src"
    plmkit.save_pretrained(plmkit.build_model(config), src,
                           tokenizer=WordPieceTokenizer(vocab, do_lower_case=True))
    (tmp_path / "dst").mkdir()
    old = os.umask(0o022)
    try:
        assert plot_curves(metrics, tmp_path / "curves.png")
        truncate_metrics(metrics, 2)
        copied = _copy_tokenizer(src, tmp_path / "dst")
    finally:
        os.umask(old)
    assert len(metrics.read_text().splitlines()) == 2 and "vocab.txt" in copied
    for path in [tmp_path / "curves.png", metrics] + [tmp_path / "dst" / name for name in copied]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
