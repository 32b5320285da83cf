"""The one map from model names to builders. Builders are thin: they choose the number of outputs, nothing
else (no device, no wrapping); the trial moves the model where it runs."""

from collections.abc import Callable

from torch import nn

from data.constants import MODEL_NAMES, TASK_CLASSES, TASKS
from models.cnet import CNet
from models.rnn import BiRNN
from models.seq import SeqModel

# A multi-class task gets one logit per class (cross-entropy); a two-class task one logit (BCE-with-logits).
NUM_OUTPUTS = {task: len(classes) if len(classes) > 2 else 1 for task, classes in TASK_CLASSES.items()}

_BUILDERS: dict[str, Callable[[int], nn.Module]] = {
    "cnet": CNet,
    "seq": SeqModel,
    "bilstm": lambda n: BiRNN(n, cell="lstm"),
    "bigru": lambda n: BiRNN(n, cell="gru"),
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


def build_model(name: str, task: str) -> nn.Module:
    """A freshly initialised model `name` for `task`: input (batch, BEAT_LEN), output logits (batch, outputs)."""
    check_model_name(name)
    check_task(task)
    return _BUILDERS[name](NUM_OUTPUTS[task])
