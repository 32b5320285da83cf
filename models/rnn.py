"""`bilstm`, `bigru`: 2-layer bidirectional recurrent networks that read each beat as a sequence over time.

    beat (187) -> (batch, 187 steps, 1 value a step), batch_first
    2-layer bidirectional LSTM or GRU, hidden 128, dropout 0.1 between the layers
    final state of the forward direction (after the last sample) + final state of the backward direction
        (after the first sample) -> 128 -> fc1 (128->64) -> ReLU -> fc2 (64->classes)

Hidden size, depth, dropout, the summed directions and the head (128->64->classes) are the original
project's (CS 598 DLH, Spring 2021). The deviation is the input: the original fed (batch, 1, 187) to a
sequence-first RNN with input size 187, so the batch became one sequence of length `batch` and each beat's
output depended on the beats before and after it in its batch (and on the batch order). Here each beat is its
own sequence of 187 one-value steps, and the summary is the final state of each direction (the original
summed the two directions' outputs at its single "step" per beat). Plain nn.LSTM / nn.GRU, so on CUDA they
run cuDNN's fused kernels.
"""

import torch
import torch.nn.functional as F
from torch import nn

from models.common import split_inputs, with_rhythm

HIDDEN = 128
LAYERS = 2
DROPOUT = 0.1
FC_HIDDEN = 64

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class BiRNN(nn.Module):
    HEAD = ("fc1", "fc2")

    def __init__(self, num_outputs: int, cell: str = "lstm", rhythm_inputs: int = 0):
        super().__init__()
        self.rhythm_inputs = rhythm_inputs
        if cell not in CELLS:
            raise ValueError(f"unknown recurrent cell {cell!r}; expected one of {sorted(CELLS)}")
        self.encoder = CELLS[cell](input_size=1, hidden_size=HIDDEN, num_layers=LAYERS,
                                   dropout=DROPOUT, bidirectional=True, batch_first=True)
        self.fc1 = nn.Linear(HIDDEN + rhythm_inputs, FC_HIDDEN)
        self.fc2 = nn.Linear(FC_HIDDEN, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beats, rhythm = split_inputs(x, self.rhythm_inputs)
        _, state = self.encoder(beats.unsqueeze(-1))  # (batch, steps, 1)
        h = state[0] if isinstance(state, tuple) else state  # LSTM returns (h, c), GRU returns h
        # h: (layers * 2, batch, HIDDEN); the last two rows are the top layer's forward and backward states.
        summary = h[-2] + h[-1]
        return self.fc2(F.relu(self.fc1(with_rhythm(summary, rhythm))))
