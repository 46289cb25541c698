"""xdelta3 in the background: an encode fed through a pipe, and a decode started early."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dgagent.engine.codec import Xdelta3
from dgagent.errors import CodecError
from tests.engine.test_archive_v3 import xdelta3_children


def test_an_encode_fed_through_a_pipe_decodes_to_what_was_written(tmp_path: Path) -> None:
    rng = random.Random(5)
    old = rng.randbytes(300_000)
    new = old[:100_000] + b"changed" + old[100_000:]
    reference = tmp_path / "ref"
    reference.write_bytes(old)
    codec = Xdelta3()
    with codec.encoding(reference, tmp_path / "d", subject=tmp_path / "new") as pipe:
        for at in range(0, len(new), 65536):
            pipe.write(new[at : at + 65536])
    assert (tmp_path / "d").stat().st_size < 2_000
    running = codec.start_decode(reference, tmp_path / "d", tmp_path / "out")
    running.wait()
    assert (tmp_path / "out").read_bytes() == new


def test_a_failed_background_run_says_why_and_leaves_no_process(tmp_path: Path) -> None:
    codec = Xdelta3()
    unreadable = tmp_path / "a-folder"  # xdelta3 cannot read it as a source
    unreadable.mkdir()
    (tmp_path / "ref").write_bytes(b"x" * 1000)
    with (
        pytest.raises(CodecError, match="could not encode new"),
        codec.encoding(unreadable, tmp_path / "d", subject=tmp_path / "new") as pipe,
    ):
        pipe.write(b"data" * 1000)
    (tmp_path / "junk").write_bytes(b"not a delta" * 100)
    running = codec.start_decode(tmp_path / "ref", tmp_path / "junk", tmp_path / "out")
    with pytest.raises(CodecError, match="could not decode junk"):
        running.wait()
    # Whatever goes wrong while the input is being written stops xdelta3.
    with (
        pytest.raises(RuntimeError, match="the plan failed"),
        codec.encoding(tmp_path / "ref", tmp_path / "d", subject=tmp_path / "new") as pipe,
    ):
        pipe.write(b"data" * 1000)
        raise RuntimeError("the plan failed")
    assert xdelta3_children() == []
