"""Look at models and checkpoints from the command line.

    python -m models list                          # registered models, their sizes and heads
    python -m models show CHECKPOINT               # what a checkpoint holds
    python -m models import-original IN OUT        # the original project's cnet state dict -> our checkpoint
"""

import argparse
import json
import sys
from pathlib import Path

from data import entry

from models.registry import MODEL_NAMES, NUM_OUTPUTS, build_model
from models.transfer import load_checkpoint, load_original_cnet, load_weights, save_checkpoint


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered models, their sizes and heads")
    show = commands.add_parser("show", help="print what a checkpoint holds")
    show.add_argument("checkpoint", type=entry.path)
    convert = commands.add_parser("import-original", help="original cnet state dict -> ecg-study checkpoint")
    convert.add_argument("source", type=entry.path,
                         help="a file written by the original's torch.save(model.state_dict(), ...)")
    convert.add_argument("out", type=entry.path)
    for command in commands.choices.values():
        entry.add_verbose(command)
    return parser


def main(argv=None) -> int:
    return entry.run(get_args_parser(), _run, argv)


def _run(args: argparse.Namespace) -> None:
    if args.command == "list":
        for name in MODEL_NAMES:
            sizes = ", ".join(f"{task} {sum(p.numel() for p in build_model(name, task).parameters()):,}"
                              for task in NUM_OUTPUTS)
            print(f"{name:7s} weights: {sizes}; head {type(build_model(name, 'mi')).HEAD}")
    elif args.command == "show":
        ckpt = load_checkpoint(args.checkpoint)
        weights = sum(v.numel() for v in ckpt["state_dict"].values())
        print(f"{ckpt['path']}: model {ckpt['model']}, task {ckpt['task']}, epoch {ckpt['epoch']}, "
              f"{weights:,} weights, fingerprint {ckpt['fingerprint'] or '-'}")
        # default=repr: a checkpoint saved by hand may hold tensors or other objects in its config
        print("config:", json.dumps(ckpt["config"], sort_keys=True, default=repr))
        print("metrics:", json.dumps(ckpt["metrics"], sort_keys=True, default=repr))
    else:
        if Path(args.out).exists():
            raise ValueError(f"{args.out} exists; import-original writes a new checkpoint: give a path that does "
                             "not exist yet")
        ckpt = load_original_cnet(args.source)
        model = load_weights(build_model("cnet", ckpt["task"]), ckpt)
        save_checkpoint(args.out, model, model_name="cnet", task=ckpt["task"], config=ckpt["config"],
                        fingerprint="", epoch=-1, metrics={})
        print(f"wrote {args.out}: cnet for {ckpt['task']} from {args.source}")


if __name__ == "__main__":
    sys.exit(main())
