"""`seq`: a convolutional encoder and a bidirectional LSTM encoder-decoder over one beat, after Mousavi &
Afghah, "Inter- and Intra-Patient ECG Heartbeat Classification for Arrhythmia Detection: A Sequence to
Sequence Deep Learning Approach" (ICASSP 2019), as the original project (CS 598 DLH, Spring 2021) built it.

    beat (187) folded to 11 channels x 17 samples (channel i holds samples 17i .. 17i+16)
    conv(11->32, k2) -> ReLU -> max-pool 2 -> conv(32->64, k2) -> ReLU -> max-pool 2 -> conv(64->128, k2) -> ReLU
        = 128 features at each of 2 positions
    encoder: bidirectional LSTM (hidden 100) reads the 2 positions as a sequence -> final (h, c) per direction
    decoder: one step of a bidirectional LSTM (hidden 100) started from the encoder's (h, c), fed a learned
        start symbol; its two directions are summed -> 100 -> fc1 (100->50) -> ReLU -> fc2 (50->classes)

Layer sizes, the fold, the head and the summed directions are the original's. Two deviations, both because
the original had weights that could never learn (their gradient is exactly zero, checked in tests):
- The original flattened the 128x2 map into a single 256-wide step, so its encoder LSTM ran one step from a
  zero state and its recurrent weights (`weight_hh`) never received a gradient. Here the encoder reads the
  map's 2 positions as a sequence of 128-wide steps (batch_first: each beat is its own sequence).
- The original fed its decoder an all-zero input, so the decoder's input weights (`weight_ih`) never received
  a gradient. Here it is fed a learned start symbol, the <GO> input of a sequence-to-sequence decoder
  (Sutskever et al. 2014), which is what Mousavi & Afghah's decoder begins from.
"""

import torch
import torch.nn.functional as F
from torch import nn

from data.constants import BEAT_LEN
from models.common import split_inputs, with_rhythm

FOLD = (11, 17)  # channels x samples; 11 * 17 == BEAT_LEN
HIDDEN = 100
FC_HIDDEN = 50
FEATURES = 128  # channels out of the last convolution = width of each encoder step

assert FOLD[0] * FOLD[1] == BEAT_LEN, "the fold must cover the beat exactly"


class SeqEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(FOLD[0], 32, kernel_size=2)
        self.c2 = nn.Conv1d(32, 64, kernel_size=2)
        self.c3 = nn.Conv1d(64, FEATURES, kernel_size=2)
        self.rnn = nn.LSTM(FEATURES, HIDDEN, num_layers=1, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.reshape(-1, *FOLD)
        x = F.max_pool1d(F.relu(self.c1(x)), 2)
        x = F.max_pool1d(F.relu(self.c2(x)), 2)
        x = F.relu(self.c3(x))  # (batch, FEATURES, positions)
        _, (h, c) = self.rnn(x.transpose(1, 2))  # (batch, positions, FEATURES): one sequence per beat
        return h, c


class SeqDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.start = nn.Parameter(torch.randn(FEATURES) * 0.1)  # learned <GO> input
        self.rnn = nn.LSTM(FEATURES, HIDDEN, num_layers=1, batch_first=True, bidirectional=True)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        go = self.start.to(h.dtype).expand(h.shape[1], 1, FEATURES)
        out, _ = self.rnn(go, (h, c))  # (batch, 1, 2 * HIDDEN)
        out = out.squeeze(1)
        return out[:, :HIDDEN] + out[:, HIDDEN:]  # sum the two directions, as the original did


class SeqModel(nn.Module):
    HEAD = ("fc1", "fc2")

    def __init__(self, num_outputs: int, rhythm_inputs: int = 0):
        super().__init__()
        self.rhythm_inputs = rhythm_inputs
        self.encoder = SeqEncoder()
        self.decoder = SeqDecoder()
        self.fc1 = nn.Linear(HIDDEN + rhythm_inputs, FC_HIDDEN)
        self.fc2 = nn.Linear(FC_HIDDEN, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beats, rhythm = split_inputs(x, self.rhythm_inputs)
        h, c = self.encoder(beats)
        return self.fc2(F.relu(self.fc1(with_rhythm(self.decoder(h, c), rhythm))))
