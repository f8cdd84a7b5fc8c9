"""lenet-export: ONNX (run by onnxruntime) and TorchScript files give PyTorch's logits; bad inputs get one sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import real_mnist_dir, synthetic_digits
from lenet.checkpoint import load_checkpoint, model_from_checkpoint
from lenet.errors import LenetError
from lenet.apps.export import export
from lenet.cli.export import main

BATCH_SIZES = (1, 37)


@pytest.fixture(scope="module")
def digits(tiny_checkpoint) -> torch.Tensor:
    """(37, 1, 28, 28) real MNIST test digits (synthetic ones without the data), normalized as the checkpoint says."""
    root = real_mnist_dir()
    if root is not None:
        from lenet.data import load_torchvision_dataset
        images = load_torchvision_dataset("mnist", root, train=False).data[:max(BATCH_SIZES)]
    else:
        images, _ = synthetic_digits(max(BATCH_SIZES), seed=3)
    normalization = load_checkpoint(tiny_checkpoint)["normalization"]
    pixels = images.float().unsqueeze(1) / 255.0
    return (pixels - normalization["mean"]) / normalization["std"]


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    """The checkpoint's model in PyTorch: what the exported files must agree with."""
    return model_from_checkpoint(load_checkpoint(tiny_checkpoint))


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    """The checkpoint exported once in each format."""
    folder = tmp_path_factory.mktemp("exported")
    return {"onnx": export(tiny_checkpoint, "onnx", folder / "lenet.onnx"),
            "torchscript": export(tiny_checkpoint, "torchscript", folder / "lenet.pt")}


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream
        return torch.jit.load(str(path))


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_torchscript_logits_match_pytorch(exported, reference, digits, batch_size):
    batch = digits[:batch_size]
    with torch.no_grad():
        expected = reference(batch)
        logits = load_torchscript(exported["torchscript"])(batch)
    assert logits.shape == (batch_size, 10)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_onnx_logits_from_onnxruntime_match_pytorch(exported, reference, digits, batch_size):
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    batch = digits[:batch_size]
    (logits,) = session.run(["logits"], {"input": batch.numpy()})
    with torch.no_grad():
        expected = reference(batch).numpy()
    assert logits.shape == (batch_size, 10)
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)


def test_onnx_input_has_a_dynamic_batch_dimension(exported):
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.name == "input"
    assert isinstance(model_input.shape[0], str) and model_input.shape[1:] == [1, 28, 28]


def test_exported_files_carry_the_normalization_and_classes(exported, tiny_checkpoint):
    onnxruntime = pytest.importorskip("onnxruntime")
    normalization = load_checkpoint(tiny_checkpoint)["normalization"]
    onnx_properties = onnxruntime.InferenceSession(
        str(exported["onnx"]), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    extra_files = {"lenet.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(exported["torchscript"]), _extra_files=extra_files)
    for properties in (onnx_properties, json.loads(extra_files["lenet.json"])):
        assert float(properties["lenet.mean"]) == pytest.approx(normalization["mean"])
        assert float(properties["lenet.std"]) == pytest.approx(normalization["std"])
        assert json.loads(properties["lenet.classes"]) == [str(digit) for digit in range(10)]


def test_cli_writes_a_model_and_says_where(tiny_checkpoint, tmp_path, capsys):
    output = tmp_path / "new" / "folder" / "lenet.pt"
    assert main([str(tiny_checkpoint), "--format", "torchscript", "-o", str(output)]) == 0
    assert output.is_file()
    assert f"wrote {output}" in capsys.readouterr().out
    assert [path.name for path in output.parent.iterdir()] == ["lenet.pt"]  # no temp file left behind


@pytest.fixture
def corrupt_checkpoint(tiny_checkpoint, tmp_path) -> Path:
    path = tmp_path / "corrupt.pt"
    data = tiny_checkpoint.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


@pytest.mark.parametrize("case, message", [
    ("missing checkpoint", "no checkpoint at"),
    ("corrupt checkpoint", "is corrupt or truncated"),
    ("unknown format", "unknown format 'tflite': use one of onnx, torchscript."),
    ("output is a folder", "is a folder: pass a file name such as"),
    ("output under a file", "part of its folder path is a file, not a folder"),
])
def test_cli_bad_input_gets_one_error_line_and_exit_2(case, message, tiny_checkpoint, corrupt_checkpoint,
                                                      tmp_path, capsys):
    checkpoint, format, output = tiny_checkpoint, "onnx", tmp_path / "out" / "lenet.onnx"
    if case == "missing checkpoint":
        checkpoint = tmp_path / "nowhere.pt"
    elif case == "corrupt checkpoint":
        checkpoint = corrupt_checkpoint
    elif case == "unknown format":
        format = "tflite"
    elif case == "output is a folder":
        output = tmp_path
    elif case == "output under a file":
        (tmp_path / "a_file").write_text("not a folder\n")
        output = tmp_path / "a_file" / "lenet.onnx"
    assert main([str(checkpoint), "--format", format, "-o", str(output)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert message in captured.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_folder_is_refused_with_a_sentence(tiny_checkpoint, tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(LenetError, match="cannot write .* choose another -o path"):
            export(tiny_checkpoint, "torchscript", folder / "lenet.pt")
    finally:
        folder.chmod(0o700)


@pytest.mark.slow
def test_command_line_prints_no_traceback_for_a_missing_checkpoint(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lenet.cli.export", str(tmp_path / "nowhere.pt"), "--format", "onnx",
                             "-o", str(tmp_path / "lenet.onnx")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == (f"error: no checkpoint at {tmp_path / 'nowhere.pt'}: check the path, or run "
                             "`make train` to create one.\n")
