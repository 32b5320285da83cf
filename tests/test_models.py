"""Every registered model: shapes, gradients, beats independent of their batch; the original cnet's weights."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from data.constants import BEAT_LEN, TASK_CLASSES, TASKS
from models import (
    MODEL_NAMES,
    NUM_OUTPUTS,
    CheckpointError,
    body_parameters,
    build_model,
    head_parameters,
    import_original_cnet,
    list_models,
)

BATCH = 4  # the RNNs run 187 sequential steps; small batches keep them fast on CPU
CASES = [(name, task) for name in MODEL_NAMES for task in TASKS]


def beats(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, BEAT_LEN, generator=g)  # the Kaggle beats are scaled to [0, 1]


def test_registry_names_and_outputs():
    assert list_models() == ["cnet", "seq", "bilstm", "bigru"]
    assert NUM_OUTPUTS == {"arrhythmia": len(TASK_CLASSES["arrhythmia"]), "mi": 1}


def test_unknown_model_and_task_raise_with_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet'.*cnet, seq, bilstm, bigru"):
        build_model("resnet", "arrhythmia")
    with pytest.raises(ValueError, match="unknown task 'afib'.*arrhythmia, mi"):
        build_model("cnet", "afib")


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = build_model("seq", "mi").state_dict()
    torch.manual_seed(3)
    b = build_model("seq", "mi").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name,task", CASES)
def test_forward_shape_finite_and_every_parameter_learns(name, task):
    torch.manual_seed(0)
    model = build_model(name, task).train()
    out = model(beats(BATCH))
    assert out.shape == (BATCH, NUM_OUTPUTS[task])
    assert torch.isfinite(out).all()
    # A random projection of the logits, so no gradient cancels by symmetry.
    (out * torch.randn_like(out)).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().max() > 0]
    assert not dead, f"{name}/{task}: parameters without a gradient: {dead}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_accepts_channel_dim_and_rejects_wrong_length(name):
    model = build_model(name, "arrhythmia").eval()
    x = beats(2)
    with torch.no_grad():
        assert torch.equal(model(x), model(x.unsqueeze(1)))
    with pytest.raises(ValueError, match=rf"expected beats shaped \(batch, {BEAT_LEN}\).*got \(2, 180\)"):
        model(x[:, :180])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_head_is_last_two_fc_layers_and_body_is_the_rest(name):
    model = build_model(name, "mi")
    assert type(model).HEAD == ("fc1", "fc2")
    head = {id(p) for p in head_parameters(model)}
    body = {id(p) for p in body_parameters(model)}
    assert head == {id(p) for p in (*model.fc1.parameters(), *model.fc2.parameters())}
    assert head.isdisjoint(body) and head | body == {id(p) for p in model.parameters()}
    assert model.fc2.out_features == 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_beats_output_does_not_depend_on_its_batch(name):
    torch.manual_seed(0)
    model = build_model(name, "arrhythmia").eval()
    x = beats(6, seed=1)
    with torch.no_grad():
        out = model(x)
        others = x.clone()
        others[2:] = beats(4, seed=2)  # same first two beats, different companions
        assert torch.allclose(model(others)[:2], out[:2], atol=1e-5)
        perm = torch.tensor([5, 3, 0, 4, 1, 2])  # order of the batch does not matter either
        assert torch.allclose(model(x[perm]), out[perm], atol=1e-5)
        assert torch.allclose(model(x[3:4]), out[3:4], atol=1e-5)


def test_the_independence_check_catches_the_original_rnn_leak():
    """The original fed (batch, 1, 187) to a sequence-first RNN; the check above must fail for that."""
    torch.manual_seed(0)
    leaky = nn.LSTM(input_size=BEAT_LEN, hidden_size=8, num_layers=2, bidirectional=True).eval()
    x = beats(6, seed=1)
    others = x.clone()
    others[2:] = beats(4, seed=2)
    with torch.no_grad():
        a, _ = leaky(x.reshape(-1, 1, BEAT_LEN))
        b, _ = leaky(others.reshape(-1, 1, BEAT_LEN))
    assert not torch.allclose(a[:2], b[:2], atol=1e-5)


# -------------------------------------------------------------------------- the original project's cnet

class _OriginalBlock(nn.Module):
    """The original project's residual block, rebuilt here with its attribute names (c1, c2, pool)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(32, 32, 5, padding=2)
        self.c2 = nn.Conv1d(32, 32, 5, padding=2)
        self.pool = nn.MaxPool1d(5, 2)

    def forward(self, x):
        return self.pool(F.relu(x + self.c2(F.relu(self.c1(x)))))


class _OriginalCNet(nn.Module):
    """The original project's CNet with its attribute names (c1, cresids, fc1, fc2) and its forward."""

    def __init__(self, outputs=5):
        super().__init__()
        self.c1 = nn.Conv1d(1, 32, 5, padding=2)
        self.cresids = nn.ModuleList(_OriginalBlock() for _ in range(5))
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, outputs)

    def forward(self, x):
        x = self.c1(x.reshape(-1, 1, 187))
        for block in self.cresids:
            x = block(x)
        return self.fc2(F.relu(self.fc1(x.reshape(-1, 64))))


@pytest.mark.parametrize("task,prefix", [("arrhythmia", ""), ("mi", ""), ("arrhythmia", "module.")])
def test_original_cnet_state_dict_loads_and_computes_the_same(task, prefix):
    torch.manual_seed(7)
    original = _OriginalCNet(NUM_OUTPUTS[task]).eval()
    saved = {prefix + k: v for k, v in original.state_dict().items()}  # prefix: saved under DataParallel
    torch.manual_seed(8)  # our model starts from different weights, so equality below means they were loaded
    ours = build_model("cnet", task).eval()
    ours.load_state_dict(import_original_cnet(saved))
    x = beats(5)
    with torch.no_grad():
        assert torch.allclose(ours(x), original(x), atol=1e-6)
    assert torch.equal(ours.cresids[3].c2.weight, original.cresids[3].c2.weight)


def test_original_cnet_state_dict_with_wrong_keys_or_shapes_is_refused():
    good = _OriginalCNet().state_dict()
    missing = {k: v for k, v in good.items() if k != "cresids.4.c2.bias"}
    with pytest.raises(CheckpointError, match="lacks cresids.4.c2.bias"):
        import_original_cnet(missing)
    wrong = {**good, "fc1.weight": torch.zeros(32, 96)}
    with pytest.raises(CheckpointError, match=r"fc1.weight is \(32, 96\) in the state dict but \(32, 64\)"):
        import_original_cnet(wrong)
    with pytest.raises(CheckpointError, match="a dict of names to tensors"):
        import_original_cnet({"c1.weight": [1, 2]})
