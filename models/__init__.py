"""The four architectures, their registry, checkpoints and transfer.

    from models import build_model, list_models
    model = build_model("cnet", "arrhythmia")        # (batch, BEAT_LEN) -> logits (batch, 5)

Names: cnet (Kachuee et al. 2018 residual CNN), seq (conv + bidirectional LSTM encoder-decoder after Mousavi &
Afghah 2019), bilstm, bigru (2-layer bidirectional RNNs over each beat's samples). Each module's docstring
says what it takes from the original project and where it departs from it.
"""

from models.common import as_beats, body_parameters, head_parameters, unwrap
from models.registry import MODEL_NAMES, NUM_OUTPUTS, build_model, list_models, rhythm_inputs
from models.transfer import (
    TRANSFER_MODES,
    CheckpointError,
    build_from_checkpoint,
    build_transfer_model,
    import_original_cnet,
    load_checkpoint,
    load_original_cnet,
    load_weights,
    save_checkpoint,
    save_torch,
    trained_with_rhythm,
)

__all__ = [
    "MODEL_NAMES", "NUM_OUTPUTS", "TRANSFER_MODES", "CheckpointError", "as_beats", "body_parameters",
    "build_from_checkpoint", "build_model", "build_transfer_model", "head_parameters", "import_original_cnet",
    "list_models", "load_checkpoint", "load_original_cnet", "load_weights", "rhythm_inputs", "save_checkpoint",
    "save_torch", "trained_with_rhythm", "unwrap",
]
