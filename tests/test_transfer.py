"""Checkpoints (format, atomic write, every refusal), transfer to MI, and loading weights into a model."""

import pickle

import numpy as np
import pytest
import torch

from data.constants import BEAT_LEN
from models import (
    MODEL_NAMES,
    CheckpointError,
    body_parameters,
    build_from_checkpoint,
    build_model,
    build_transfer_model,
    head_parameters,
    load_checkpoint,
    load_original_cnet,
    load_weights,
    save_checkpoint,
)
from models.__main__ import main
from models.transfer import FORMAT


def make_checkpoint(tmp_path, name="cnet", task="arrhythmia", seed=0, filename=None):
    torch.manual_seed(seed)
    model = build_model(name, task)
    path = tmp_path / (filename or f"{name}-{task}.pt")
    save_checkpoint(path, model, model_name=name, task=task, config={"lr": 1e-3, "batch_size": 256},
                    fingerprint="abc123", epoch=7, metrics={"val": {"macro_f1": 0.5}})
    return path, model


def one_sentence(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and len(text) < 300, text
    return text


# ------------------------------------------------------------------------------------ saving and loading

def test_round_trip_keeps_every_field_and_weight(tmp_path):
    path, model = make_checkpoint(tmp_path, "bigru", "mi")
    ckpt = load_checkpoint(path)
    assert {k: ckpt[k] for k in ("format", "version", "model", "task", "fingerprint", "epoch")} == {
        "format": FORMAT, "version": 1, "model": "bigru", "task": "mi", "fingerprint": "abc123", "epoch": 7}
    assert ckpt["config"] == {"lr": 1e-3, "batch_size": 256}
    assert ckpt["metrics"] == {"val": {"macro_f1": 0.5}}
    assert ckpt["path"] == str(path)
    state = model.state_dict()
    assert ckpt["state_dict"].keys() == state.keys()
    assert all(torch.equal(ckpt["state_dict"][k], state[k]) for k in state)


def test_save_is_atomic_and_overwrites(tmp_path):
    path, _ = make_checkpoint(tmp_path)
    make_checkpoint(tmp_path, seed=1)  # same file again: replaced, no temp file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_save_converts_numpy_values_so_weights_only_loading_reads_them(tmp_path):
    model = build_model("cnet", "mi")
    path = save_checkpoint(tmp_path / "sub" / "np.pt", model, model_name="cnet", task="mi",
                           config={"input": tmp_path, "classes": ("normal", "MI")}, fingerprint="f", epoch=0,
                           metrics={"f1": np.float64(0.25), "confusion_matrix": np.array([[1, 2], [3, 4]])})
    ckpt = load_checkpoint(path)
    assert ckpt["metrics"] == {"f1": 0.25, "confusion_matrix": [[1, 2], [3, 4]]}
    assert ckpt["config"] == {"input": str(tmp_path), "classes": ["normal", "MI"]}


def test_save_refuses_inconsistent_arguments(tmp_path):
    model = build_model("cnet", "arrhythmia")
    kwargs = dict(config={}, fingerprint="f", epoch=1, metrics={})
    with pytest.raises(ValueError, match="not a 'cnet' model for task 'mi'"):
        save_checkpoint(tmp_path / "a.pt", model, model_name="cnet", task="mi", **kwargs)
    with pytest.raises(ValueError, match="not a 'seq' model"):
        save_checkpoint(tmp_path / "a.pt", model, model_name="seq", task="arrhythmia", **kwargs)
    with pytest.raises(ValueError, match="plain JSON-able values; found a value of type object"):
        save_checkpoint(tmp_path / "a.pt", model, model_name="cnet", task="arrhythmia",
                        config={"x": object()}, fingerprint="f", epoch=1, metrics={})
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------- each refusal

def _write(path, obj):
    torch.save(obj, path)
    return path


def _good_dict(tmp_path):
    return torch.load(make_checkpoint(tmp_path)[0], weights_only=True)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "nope.pt")
    assert one_sentence(err) == f"checkpoint {tmp_path / 'nope.pt'} does not exist"


def test_directory(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file") as err:
        load_checkpoint(tmp_path)
    one_sentence(err)


def test_empty_file(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty.*truncated or never written") as err:
        load_checkpoint(tmp_path / "empty.pt")
    one_sentence(err)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_file(tmp_path, cut):
    path, _ = make_checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is truncated or corrupt") as err:
        load_checkpoint(path)
    one_sentence(err)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="is truncated or corrupt") as err:
        load_checkpoint(path)
    one_sentence(err)


def test_plain_tensor_is_not_a_checkpoint(tmp_path):
    path = _write(tmp_path / "t.pt", torch.zeros(3, 4))
    with pytest.raises(CheckpointError, match=r"is not an ecg-study-checkpoint file: it holds a tensor of shape "
                                              r"\(3, 4\)") as err:
        load_checkpoint(path)
    one_sentence(err)


def test_dict_without_format_is_not_a_checkpoint(tmp_path):
    path = _write(tmp_path / "d.pt", {"weights": [1, 2], "epoch": 3})
    with pytest.raises(CheckpointError, match="holds a dict with keys weights, epoch, where a dict with format"):
        load_checkpoint(path)


def test_bare_state_dict_of_another_model_gets_a_hint(tmp_path):
    path = _write(tmp_path / "sd.pt", build_model("bilstm", "mi").state_dict())
    with pytest.raises(CheckpointError, match="a bare state dict: save with models.transfer.save_checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("change,message", [
    ({"format": "something-else"}, "has format 'something-else', expected 'ecg-study-checkpoint'"),
    ({"version": 2}, "has version 2; this code reads version 1"),
    ({"model": "resnet"}, "holds unknown model 'resnet'; valid models: cnet, seq, bilstm, bigru"),
    ({"task": "afib"}, "is for unknown task 'afib'"),
    ({"epoch": "7"}, "field 'epoch' should be of type int, found str"),
    ({"state_dict": {}}, "field 'state_dict' is not a non-empty dict of tensors"),
])
def test_wrong_fields(tmp_path, change, message):
    path = _write(tmp_path / "bad.pt", {**_good_dict(tmp_path), **change})
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    one_sentence(err)


def test_missing_field(tmp_path):
    ckpt = _good_dict(tmp_path)
    del ckpt["fingerprint"], ckpt["metrics"]
    with pytest.raises(CheckpointError, match="lacks the field\\(s\\) fingerprint, metrics"):
        load_checkpoint(_write(tmp_path / "bad.pt", ckpt))


class Payload:
    """Unpickling this runs code: it writes `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


@pytest.mark.parametrize("writer,message", [
    ("torch", "it is a pickle that calls or builds the Python object `exec`"),
    ("pickle-2", "it is a pickle that calls or builds the Python object `exec`"),
    ("pickle-5", "weights-only loading cannot read it"),
])
def test_pickle_carrying_code_is_refused_and_never_runs(tmp_path, writer, message):
    marker, live_marker = tmp_path / "marker", tmp_path / "live_marker"
    path = tmp_path / "evil.pt"
    payload = {"format": FORMAT, "version": 1, "model": "cnet", "hook": Payload(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(writer[-1])))
    with pytest.raises(CheckpointError, match=f"refused to load {path}: {message}") as err:
        load_checkpoint(path)
    one_sentence(err)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        build_transfer_model("cnet", path, "frozen")
    assert not marker.exists()
    # The payload is live: an unsafe load of the same bytes would have run it.
    pickle.loads(pickle.dumps(Payload(live_marker)))
    assert live_marker.read_text() == "code ran"


# ----------------------------------------------------------------------------------------------- transfer

@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_transfer_loads_the_body_freshens_the_head_and_freezes_the_body(tmp_path, name, mode):
    path, source = make_checkpoint(tmp_path, name, "arrhythmia", seed=1)
    torch.manual_seed(2)
    model = build_transfer_model(name, path, mode)
    src = source.state_dict()
    head_keys = {k for k in src if k.split(".")[0] in type(model).HEAD}
    assert head_keys == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    for key, value in model.state_dict().items():
        if key in head_keys:
            assert value.shape == src[key].shape or key.startswith("fc2")
            assert value.shape != src[key].shape or not torch.equal(value, src[key]), f"{key} was not replaced"
        else:
            assert torch.equal(value, src[key]), f"{key} was not loaded"
    assert model.fc2.out_features == 1

    out = model(torch.rand(4, BEAT_LEN))
    assert out.shape == (4, 1)
    (out * torch.randn_like(out)).sum().backward()
    for p in head_parameters(model):
        assert p.requires_grad and p.grad is not None and p.grad.abs().max() > 0
    for p in body_parameters(model):
        if mode == "frozen":
            assert not p.requires_grad and p.grad is None
        else:
            assert p.requires_grad and p.grad is not None and p.grad.abs().max() > 0


def test_transfer_refuses_another_architecture(tmp_path):
    path, _ = make_checkpoint(tmp_path, "bigru", "arrhythmia")
    with pytest.raises(CheckpointError, match="into a 'bilstm' model: it holds a 'bigru' model, and transfer "
                                              "needs the same architecture") as err:
        build_transfer_model("bilstm", path, "frozen")
    one_sentence(err)


def test_transfer_refuses_an_mi_checkpoint_and_bad_arguments(tmp_path):
    path, _ = make_checkpoint(tmp_path, "cnet", "mi")
    with pytest.raises(CheckpointError, match="it holds a model for task 'mi', and transfer starts from one for 'arrhythmia'"):
        build_transfer_model("cnet", path, "frozen")
    with pytest.raises(ValueError, match="unknown transfer mode 'thaw'; valid modes: frozen, finetune"):
        build_transfer_model("cnet", path, "thaw")
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_transfer_model("vgg", path, "frozen")
    with pytest.raises(CheckpointError, match="does not exist"):
        build_transfer_model("cnet", tmp_path / "missing.pt", "frozen")


# ------------------------------------------------------------------------------ --init and evaluation

def test_build_from_checkpoint_restores_the_model(tmp_path):
    path, source = make_checkpoint(tmp_path, "seq", "arrhythmia", seed=4)
    torch.manual_seed(5)
    model = build_from_checkpoint(path, name="seq", task="arrhythmia").eval()
    x = torch.rand(3, BEAT_LEN)
    with torch.no_grad():
        assert torch.equal(model(x), source.eval()(x))
    with pytest.raises(CheckpointError, match="holds a 'seq' model, not the 'cnet' model asked for"):
        build_from_checkpoint(path, name="cnet")
    with pytest.raises(CheckpointError, match="holds a model for task 'arrhythmia', not for the 'mi' task asked for"):
        build_from_checkpoint(path, task="mi")


def test_load_weights_checks_keys_and_shapes(tmp_path):
    path, _ = make_checkpoint(tmp_path, "cnet", "mi")
    with pytest.raises(CheckpointError, match=r"fc2.bias is \(1,\) in the checkpoint but \(5,\) in the model") as err:
        load_weights(build_model("cnet", "arrhythmia"), path)
    one_sentence(err)
    with pytest.raises(CheckpointError, match="does not fit the BiRNN model: checkpoint lacks"):
        load_weights(build_model("bigru", "mi"), path)
    # Body only: the head may differ.
    model = build_model("cnet", "arrhythmia")
    load_weights(model, path, head=False)
    assert torch.equal(model.c1.weight, load_checkpoint(path)["state_dict"]["c1.weight"])


# ----------------------------------------------------------------------- the original project's cnet file

def test_original_cnet_file_loads_transfers_and_converts(tmp_path, capsys):
    torch.manual_seed(9)
    original = build_model("cnet", "arrhythmia").state_dict()  # same names and shapes as the original's CNet
    path = _write(tmp_path / "cnet_no_smote", {"module." + k: v for k, v in original.items()})
    ckpt = load_checkpoint(path)
    assert (ckpt["model"], ckpt["task"], ckpt["epoch"]) == ("cnet", "arrhythmia", -1)
    assert ckpt["config"]["source"] == "original project state dict"
    assert load_original_cnet(path)["state_dict"].keys() == original.keys()
    with pytest.raises(CheckpointError, match="not an ecg-study-checkpoint file"):
        load_checkpoint(path, allow_original=False)

    model = build_transfer_model("cnet", path, "frozen")
    assert torch.equal(model.cresids[2].c1.weight, original["cresids.2.c1.weight"])

    main(["import-original", str(path), str(tmp_path / "converted.pt")])
    main(["show", str(tmp_path / "converted.pt")])
    assert "model cnet, task arrhythmia, epoch -1" in capsys.readouterr().out
    converted = load_checkpoint(tmp_path / "converted.pt", allow_original=False)
    assert all(torch.equal(converted["state_dict"][k], v) for k, v in original.items())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, raised while importing torch._dynamo
def test_compiled_model_saves_and_loads_under_plain_names(tmp_path):
    """torch.compile prefixes parameter names with `_orig_mod.`; checkpoints never carry that prefix."""
    compiled = torch.compile(build_model("cnet", "mi"))  # wrapping only: nothing is compiled until a call
    path = save_checkpoint(tmp_path / "c.pt", compiled, model_name="cnet", task="mi", config={},
                           fingerprint="", epoch=0, metrics={})
    assert "c1.weight" in load_checkpoint(path)["state_dict"]
    load_weights(compiled, path)
    assert len(list(head_parameters(compiled))) == 4
