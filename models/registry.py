"""The one map from model names to builders. Builders are thin: they choose the number of outputs, nothing
else (no device, no wrapping); the trial moves the model where it runs."""

from collections.abc import Callable

from torch import nn

from data.constants import MODEL_NAMES, TASK_CLASSES, TASKS
from data.rhythm import FEATURES as RHYTHM_FEATURES
from models.cnet import CNet
from models.rnn import BiRNN
from models.seq import SeqModel

# A multi-class task gets one logit per class (cross-entropy); a two-class task one logit (BCE-with-logits).
NUM_OUTPUTS = {task: len(classes) if len(classes) > 2 else 1 for task, classes in TASK_CLASSES.items()}

_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {  # (outputs, RR-interval features) -> model
    "cnet": CNet,
    "seq": SeqModel,
    "bilstm": lambda n, rhythm: BiRNN(n, cell="lstm", rhythm_inputs=rhythm),
    "bigru": lambda n, rhythm: BiRNN(n, cell="gru", rhythm_inputs=rhythm),
}
assert tuple(_BUILDERS) == MODEL_NAMES, "data/constants.py names the models this registry builds"


def list_models() -> list[str]:
    return list(MODEL_NAMES)


def check_model_name(name: str) -> None:
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")


def check_task(task: str) -> None:
    if task not in NUM_OUTPUTS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")


def rhythm_inputs(rhythm: bool) -> int:
    """Inputs a model takes beside each beat's samples: its RR-interval features (data/rhythm.py), or none."""
    return len(RHYTHM_FEATURES) if rhythm else 0


def build_model(name: str, task: str, rhythm_inputs: int = 0) -> nn.Module:
    """A freshly initialised model `name` for `task`: input (batch, BEAT_LEN), or (batch, BEAT_LEN + rhythm_inputs)
    with each beat's RR-interval features (data/rhythm.py) after its samples; output logits (batch, outputs)."""
    check_model_name(name)
    check_task(task)
    if isinstance(rhythm_inputs, bool) or not isinstance(rhythm_inputs, int) or rhythm_inputs < 0:
        raise ValueError(f"rhythm_inputs is a number of features (0 for none; rhythm_inputs(True) gives "
                         f"{len(RHYTHM_FEATURES)}), got {rhythm_inputs!r}")
    return _BUILDERS[name](NUM_OUTPUTS[task], rhythm_inputs)
