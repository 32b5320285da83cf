"""`cnet`: the residual CNN of Kachuee, Fazeli & Sarrafzadeh, "ECG Heartbeat Classification: A Deep
Transferable Representation" (ICHI 2018), as the original project (CS 598 DLH, Spring 2021) built it.

    conv(1->32, k5, pad 2)                      no activation, as in the original's code
    5 x residual block: conv k5 -> ReLU -> conv k5 -> + skip -> ReLU -> max-pool(k5, stride 2)
    flatten (32 channels x 2 samples = 64) -> fc1 (64->32) -> ReLU -> fc2 (32->classes)

Beat length 187 shrinks 187 -> 92 -> 44 -> 20 -> 8 -> 2 through the unpadded pools, hence the 64 inputs
of fc1 (the issue's "FC 64->32->classes"); Kachuee et al. also describe two 32-neuron FC layers.

Parameter names are the original project's (`c1.*`, `cresids.{0..4}.c1.*`, `cresids.{0..4}.c2.*`,
`fc1.*`, `fc2.*`), so a state dict it saved loads directly; `models.transfer.import_original_cnet`
validates one and strips the `module.` prefix its DataParallel wrapper added on multi-GPU machines.
"""

import torch
import torch.nn.functional as F
from torch import nn

from data.constants import BEAT_LEN
from models.common import split_inputs, with_rhythm

CHANNELS = 32
KERNEL = 5
BLOCKS = 5
POOL_KERNEL, POOL_STRIDE = 5, 2
FC_HIDDEN = 32


def pooled_length(length: int, blocks: int = BLOCKS) -> int:
    """Samples left after `blocks` unpadded max-pools (the convolutions keep the length: padding 2)."""
    for _ in range(blocks):
        length = (length - POOL_KERNEL) // POOL_STRIDE + 1
    return length


class ResidualBlock(nn.Module):
    def __init__(self, channels: int = CHANNELS):
        super().__init__()
        self.c1 = nn.Conv1d(channels, channels, KERNEL, padding=KERNEL // 2)
        self.c2 = nn.Conv1d(channels, channels, KERNEL, padding=KERNEL // 2)
        self.pool = nn.MaxPool1d(POOL_KERNEL, stride=POOL_STRIDE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c2(F.relu(self.c1(x)))
        return self.pool(F.relu(x + y))


class CNet(nn.Module):
    HEAD = ("fc1", "fc2")

    def __init__(self, num_outputs: int, rhythm_inputs: int = 0):
        super().__init__()
        self.rhythm_inputs = rhythm_inputs
        self.c1 = nn.Conv1d(1, CHANNELS, KERNEL, padding=KERNEL // 2)
        self.cresids = nn.ModuleList(ResidualBlock(CHANNELS) for _ in range(BLOCKS))
        self.fc1 = nn.Linear(CHANNELS * pooled_length(BEAT_LEN) + rhythm_inputs, FC_HIDDEN)
        self.fc2 = nn.Linear(FC_HIDDEN, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beats, rhythm = split_inputs(x, self.rhythm_inputs)
        x = self.c1(beats.unsqueeze(1))
        for block in self.cresids:
            x = block(x)
        return self.fc2(F.relu(self.fc1(with_rhythm(x.flatten(1), rhythm))))
