"""Weights cannot exhaust the machine or run code (issue 19, class 4): a .gz is decompressed as a
capped stream, a file's size and its torch records are capped, metadata is range-checked before
the network is built, non-finite weights are refused; RELION's decompressed v1.0.ckpt loads with
its sha256 given on the command line or in $BLUSH_WEIGHTS_SHA256."""

import gzip
import io
import os
import zipfile
import zlib

import mrcfile
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from blush_scipion.engine import cli
from blush_scipion.engine.blush.model import BlushUNet
from blush_scipion.engine.blush.weights import MAX_BYTES, sha256_of

from .one_line import assert_refused, fingerprints
from .test_relion_checkpoint import _checkpoint, _reference

GOOD_META = {"depth": "2", "width": "4", "block_size": "16", "voxel_size": "1.5", "voxel_size_max": "3.0"}


def _net_state(nan: bool = False) -> dict:
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in BlushUNet(2, 4).state_dict().items()}
    if nan:
        state["encoders.0.0.weight"].view(-1)[3] = float("nan")
    return state


def _safetensors(path, nan=False, **meta):
    save_file(_net_state(nan), str(path), metadata={**GOOD_META, **meta})
    return path


def _bomb(path):
    """1 GiB of zeros gzipped as a stream (about 5 MB on disk; never 1 GiB in memory)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    zeros = bytes(1 << 20)
    with open(path, "wb") as f:
        for _ in range(1024):
            f.write(packer.compress(zeros))
        f.write(packer.flush())
    return path


def _torch_bytes(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _gzip_bytes(state) -> bytes:
    return gzip.compress(_torch_bytes(state))


def _deflated_checkpoint(path):
    """A torch zip checkpoint whose records are deflate-compressed (torch writes them stored)."""
    with (
        zipfile.ZipFile(io.BytesIO(_torch_bytes({"model_state_dict": _net_state()}))) as src,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for record in src.infolist():
            dst.writestr(record.filename, src.read(record))
    return path


def _sparse(path, size=MAX_BYTES + (1 << 20)):
    with open(path, "wb") as f:  # sparse: no disk used
        f.truncate(size)
    return path


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _relion_ckpt_with_inf(path):
    state = _checkpoint(_reference())
    state["model_state_dict"]["outc.bias"][0] = float("inf")
    return _write(path, _torch_bytes(state))


def _bad(build, *words, options=()):
    """A case: `build` makes the weights file in a folder; refused with `options` in one line holding
    `words`."""
    return build, list(options), list(words)


def _meta(stem, *words, **meta):
    """A case: STEM.safetensors with `meta` (metadata, or nan=True), refused in one line holding its
    name and `words`."""
    name = f"{stem}.safetensors"
    return _bad(lambda d: _safetensors(d / name, **meta), name, *words)


def _written(name, data, *words):
    """A case: the file NAME holding the bytes `data()` gives, refused in one line holding its name and
    `words`."""
    return _bad(lambda d: _write(d / name, data()), name, *words)


# name: (weights file made in a folder, extra options, words the one line must hold)
CASES = {
    "gzip bomb": _bad(
        lambda d: _bomb(d / "bomb.ckpt.gz"), "bomb.ckpt.gz", f"more than {MAX_BYTES >> 20} MiB"
    ),
    "not gzip": _written("fake.ckpt.gz", lambda: b"not gzip at all", "not a readable gzip"),
    "truncated gzip": _written(
        "cut.ckpt.gz", lambda: _gzip_bytes({"a": torch.ones(999)})[:300], "not a readable gzip"
    ),
    "huge file": _bad(
        lambda d: _sparse(d / "huge.safetensors"), "huge.safetensors", "more than any denoiser"
    ),
    "compressed torch records": _bad(
        lambda d: _deflated_checkpoint(d / "packed.ckpt"), "packed.ckpt", "compressed records"
    ),
    "not a checkpoint": _written("junk.ckpt", lambda: b"\x00" * 100),
    "truncated safetensors": _bad(
        lambda d: _write(d / "cut.safetensors", _safetensors(d / "x").read_bytes()[:200]),
        "cut.safetensors",
        "not a readable safetensors",
    ),
    "width 10^6": _meta("wide", "metadata width is '1000000'", "[1, 256]", width="1000000"),
    "depth 40": _meta("deep", "metadata depth is '40'", depth="40"),
    "depth 2.5": _meta("half", "metadata depth", "whole number", depth="2.5"),
    "voxel 1e-6 A": _meta("tiny", "metadata voxel_size is '1e-6'", voxel_size="1e-6"),
    "voxel nan": _meta("nanvox", "metadata voxel_size is 'nan'", voxel_size="nan"),
    "voxel text": _meta("word", "metadata voxel_size is 'big'", voxel_size="big"),
    "voxel max below min": _meta("range", "voxel_size_max 1 is below voxel_size 1.5", voxel_size_max="1.0"),
    "block 10^5": _meta("block", "metadata block_size is '100000'", block_size="100000"),
    "dim 4": _meta("dim", "metadata dim is '4'", dim="4"),
    "layout": _meta("layout", "metadata layout is 'exec'", layout="exec"),
    "NaN weight": _meta("nan", "encoders.0.0.weight holds NaN or infinite values", nan=True),
    "checkpoint depth 40": _written(
        "deep.ckpt",
        lambda: _torch_bytes({"model_state_dict": _net_state(), "depth": 40}),
        "metadata depth is 40",
    ),
    "RELION ckpt with inf": _bad(
        lambda d: _relion_ckpt_with_inf(d / "inf.ckpt"),
        "inf.ckpt",
        "head.bias",
        "NaN or infinite",
        options=["--weights-sha256", "{sha}"],
    ),
    "RELION ckpt, no sha256": _written(
        "v1.0.ckpt", lambda: _torch_bytes(_checkpoint(_reference())), "no sha256", "--weights-sha256"
    ),
    "wrong sha256": _bad(
        lambda d: _safetensors(d / "ok.safetensors"),
        "ok.safetensors",
        "does not match",
        options=["--weights-sha256", "0" * 64],
    ),
    "malformed sha256": _bad(
        lambda d: _safetensors(d / "ok.safetensors"),
        "'xyz'",
        "not 64 hexadecimal digits",
        options=["--weights-sha256", "xyz"],
    ),
    "missing file": _bad(lambda d: d / "absent.safetensors", "absent.safetensors", "no such weights file"),
}


@pytest.fixture(scope="module")
def half_maps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("halves")
    g = np.random.default_rng(0)
    signal = g.normal(size=(32, 32, 32))  # at least half a 64^3 block (smaller maps: see the report)
    for h in (1, 2):
        with mrcfile.new(folder / f"h{h}.mrc") as m:
            m.set_data((signal + 0.5 * g.normal(size=signal.shape)).astype(np.float32))
            m.voxel_size = 1.5
    return folder


def denoise(half_maps, out, weights, *options):
    return cli.main(
        [
            "denoise",
            "--half1",
            str(half_maps / "h1.mrc"),
            "--half2",
            str(half_maps / "h2.mrc"),
            "--out",
            str(out),
            "--weights",
            str(weights),
            *options,
        ]
    )


@pytest.mark.parametrize("case", list(CASES))
def test_bad_weights_are_refused_in_one_line(case, half_maps, tmp_path, capsys):
    build, options, words = CASES[case]
    weights = build(tmp_path)
    options = [o.format(sha=sha256_of(weights)) for o in options]
    before = fingerprints(half_maps, tmp_path)
    code = denoise(half_maps, tmp_path / "out.mrc", weights, *options)
    line = assert_refused(code, capsys.readouterr().err, "denoise", *words)
    print(f"| {case} | `{line}` |")
    assert fingerprints(half_maps, tmp_path) == before
    assert not (tmp_path / "out.mrc").exists()


def test_relion_decompressed_v1_ckpt_loads_with_its_sha256(half_maps, tmp_path, capsys, monkeypatch):
    """RELION 5 keeps only the decompressed v1.0.ckpt, whose sha256 RELION does not publish: the user
    gives it (`sha256sum v1.0.ckpt`) on the command line or in $BLUSH_WEIGHTS_SHA256."""
    ckpt = _write(tmp_path / "v1.0.ckpt", _torch_bytes(_checkpoint(_reference())))
    assert denoise(half_maps, tmp_path / "a.mrc", ckpt, "--weights-sha256", sha256_of(ckpt).upper()) == 0
    monkeypatch.setenv("BLUSH_WEIGHTS_SHA256", sha256_of(ckpt))
    assert denoise(half_maps, tmp_path / "b.mrc", ckpt) == 0
    a, b = mrcfile.read(tmp_path / "a.mrc"), mrcfile.read(tmp_path / "b.mrc")
    assert np.isfinite(a).all() and np.allclose(a, b, atol=1e-5 * np.abs(a).max())


def test_weights_within_the_limits_still_load(half_maps, tmp_path):
    weights = _safetensors(tmp_path / "ok.safetensors")
    assert denoise(half_maps, tmp_path / "out.mrc", weights, "--weights-sha256", sha256_of(weights)) == 0
    state = {"model_state_dict": _net_state(), **{k: float(v) for k, v in GOOD_META.items()}}
    gz = _write(tmp_path / "ok.ckpt.gz", _gzip_bytes(state))
    assert denoise(half_maps, tmp_path / "gz.mrc", gz) == 0
    assert os.path.getsize(tmp_path / "gz.mrc") > 0
