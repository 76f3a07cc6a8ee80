"""The ``nlgc`` command: ``fit``, ``validate``, ``test``, ``demo``, ``analyze``, ``predict``,
``models``, ``weights``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ANALYZE_HELP = """Capture the attention of every NL/SNL/GC/SE block of a model on images or
videos, measure how query-independent it is (GCNet's study), and write DIR/report.html,
DIR/metrics.json and the pictures."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def query_text(text: str) -> str:
    """argparse type: a --queries value whose form and counts are valid (pixel coordinates
    are checked against the input size later)."""
    from nlgc.analysis.queries import parse_queries

    if not text.startswith("pixels:"):
        try:
            parse_queries(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _analyze_parser(sub) -> None:
    p = sub.add_parser(
        "analyze", help="attention heatmaps and query-independence report", description=ANALYZE_HELP
    )
    source = p.add_argument_group("model (one of, or both for a foreign checkpoint)")
    source.add_argument("--model", help="a registered name (see `nlgc models`)")
    source.add_argument(
        "--checkpoint", help="an nlgc checkpoint, a state dict, a zoo name or a URL"
    )
    p.add_argument(
        "--inputs",
        nargs="+",
        required=True,
        metavar="PATH",
        help="image/video files or folders (searched recursively)",
    )
    p.add_argument(
        "--queries",
        default="grid:3",
        type=query_text,
        help="grid:N | random:N[:SEED] | points:y,x;y,x (fractions) | "
        "pixels:y,x;y,x (pixels of the --size input)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--size", type=positive_int, default=224, help="input side after resize + crop")
    p.add_argument("--frames", type=positive_int, default=8, help="frames sampled from each video")
    p.add_argument("--max-inputs", type=positive_int, default=16)
    p.add_argument("--no-complexity", action="store_true", help="skip the complexity chart")
    p.set_defaults(run=run_analyze)


def run_analyze(args) -> None:
    from nlgc.analysis.analyze import analyze
    from nlgc.analysis.complexity import complexity_table
    from nlgc.analysis.inputs import read_samples
    from nlgc.analysis.queries import parse_queries
    from nlgc.models import modality, model_spec, without_blocks
    from nlgc.models.from_checkpoint import load_model

    model, report = load_model(args.checkpoint, args.model)
    name = report.model_name
    video = modality(name) == "video"
    preprocessing = getattr(model, "preprocessing", None)  # the weights' own normalisation
    if model_spec(name).task == "detection":  # its blocks live in the backbone's body, which
        model = model.backbone.body  # the detector feeds normalised images (GCNet's Table 1)
    samples = read_samples(
        args.inputs, args.size, args.frames, video, args.max_inputs, preprocessing
    )
    size = (args.frames, args.size, args.size) if video else (args.size, args.size)
    queries = parse_queries(args.queries, size)
    rows = None
    if not args.no_complexity:
        shape = (1, *samples[0].tensor.shape)
        plain = without_blocks(model)  # the checkpoint's own network, minus its blocks
        rows = complexity_table({name: model, f"{name} without blocks": plain}, shape)
    settings = {"model": name, "checkpoint": str(args.checkpoint or "-"), "size": args.size}
    report = analyze(model, samples, queries, args.out, settings, rows, f"nlgc analysis: {name}")
    print(f"report: {report}")


def _train_parsers(sub) -> None:
    for stage, text in (
        ("fit", "train a model (checkpoints every epoch; --resume continues)"),
        ("validate", "evaluate on the validation split (top-1, top-5)"),
        ("test", "evaluate on the test split (top-1, top-5, confusion matrix)"),
    ):
        p = sub.add_parser(stage, help=text, description=text + ". " + CONFIG_HELP)
        p.add_argument("--config", type=Path, required=True, help="YAML file, see configs/")
        example = "e.g. trainer.max_epochs=5 optim.lr=0.01"
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=f"overrides, {example}")
        if stage == "fit":
            p.add_argument(
                "--resume",
                action="store_true",
                help="continue from the newest checkpoint in OUT/checkpoints",
            )
            p.add_argument(
                "--init-from",
                metavar="WEIGHTS",
                help="start from these weights (zoo name, URL or file; 2D ImageNet weights are "
                "inflated into video models): sets model.init_from",
            )
        else:
            p.add_argument("--checkpoint", help="weights to evaluate (default: the run's last)")
        p.add_argument(
            "--skip-corrupt",
            action="store_true",
            help="leave unreadable images/videos out (counted in the log)",
        )
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.set_defaults(run=run_train, stage=stage)


CONFIG_HELP = """Sections: seed, out, model {name, num_classes, overrides, init_from}, data
{kind: images | videos | synthetic, root, size, batch_size, workers, skip_corrupt, clip_len,
frame_interval, full_video_test, video_test {clips, crops, short_side}}, optim {optimizer, lr,
momentum, weight_decay, label_smoothing, augment}, trainer (lightning.Trainer arguments: max_epochs,
accelerator, devices, num_nodes, strategy, precision, gradient_clip_val, ...)."""


def run_train(args) -> None:
    import json

    from nlgc.train import run

    overrides = [*args.overrides, *(["data.skip_corrupt=true"] if args.skip_corrupt else [])]
    if getattr(args, "init_from", None):
        overrides.append(f"model.init_from={args.init_from}")
    config = run.load_config(args.config, overrides)
    if args.stage == "fit":
        metrics = run.fit(config, resume=args.resume, progress=not args.no_progress)
    else:
        progress = not args.no_progress
        metrics = run.evaluate(config, args.stage, args.checkpoint, progress=progress)
    print(json.dumps(metrics, indent=2))


def _demo_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job on built-in data (CPU, ≤ 10 min)",
        description="Train the demo's two-stage ResNet and its NL (four pairwise functions), "
        "DNL, SNL and GC variants on the built-in long-range task, test them, diagnose the "
        "runs that fail, measure their cost, compute GCNet's Table 1 and the pairwise/unary "
        "decomposition on the NL and DNL models and write one report. --task detection: the "
        "same task per object, torchvision's Mask R-CNN plain, with an NL block, all-GC, "
        "all-SNL and with a DNL block, scored by box AP. --task segmentation: the same task "
        "per pixel, mmsegmentation's FCN head against its NL, GC and DNL heads on the same "
        "network, scored by mIoU.",
    )
    p.add_argument(
        "--task",
        choices=("classification", "detection", "segmentation"),
        default="classification",
        help="classification (default): is the other item the same class?; detection: each "
        "item an instance labelled by it; segmentation: every pixel of an item labelled by it",
    )
    p.add_argument("--out", type=Path, default=Path("demo_output"))
    p.add_argument("--quick", action="store_true", help="a smaller run (≤ 2 min)")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="train every variant once per seed (the README's table: --seeds 0 1 2 3 4)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=2,
        help="training runs at a time, one torch thread each (the numbers do not depend on "
        "it), and the analyses' torch threads; default 2",
    )
    p.set_defaults(run=run_demo)


def run_demo(args) -> None:
    from nlgc.train.numerics import missing_pins

    pins = missing_pins(dict(os.environ))
    if pins and args.command_line is not None:  # the kernels' ISA is fixed when torch starts
        sys.stdout.flush()
        os.execve(
            sys.executable,
            [sys.executable, "-m", "nlgc", *args.command_line],
            {**os.environ, **pins},
        )
    from nlgc.train.demo import run_demo as demo

    demo(args.out, quick=args.quick, seeds=tuple(args.seeds), threads=args.threads, task=args.task)


def _weights_parser(sub) -> None:
    p = sub.add_parser("weights", help="released weights by name: list, info, download")
    action = p.add_subparsers(dest="action", required=True)
    listing = action.add_parser("list", help="zoo names (model.tag) with their accuracy")
    listing.add_argument("pattern", nargs="?", default="*")
    for name, text in (("info", "everything about one entry"), ("download", "into the cache")):
        q = action.add_parser(name, help=text)
        q.add_argument("name", help="a zoo name, see `nlgc weights list`")
    p.set_defaults(run=run_weights)


def run_weights(args) -> None:
    from nlgc.models.download import cached_path, fetch
    from nlgc.models.zoo import list_weights, weights_entry

    if args.action == "list":
        for name in list_weights(args.pattern):
            entry = weights_entry(name)
            cached = "cached" if cached_path(entry).is_file() else ""
            print(f"{name:<44} {entry.accuracy:<40} {cached}")
        return
    entry = weights_entry(args.name)
    if args.action == "download":
        print(fetch(entry))
        return
    fields = {
        "name": entry.name,
        "network": f"{entry.model} {entry.options or ''}".strip(),
        "source": f"{entry.source.name}: {entry.source.title}",
        "url": entry.url,
        "hash": f"{entry.hash.name} ({entry.sha256_prefix or 'no hash in the name'})",
        "accuracy": entry.accuracy,
        "protocol": entry.protocol,
        "preprocessing": entry.preprocessing.as_dict(),
        "classes": entry.classes or "-",
        "hugging face": entry.hf_hub or "-",
        "license": entry.license or "not stated",
        "cache path": cached_path(entry),
    }
    for key, value in fields.items():
        print(f"{key + ':':<15} {value}")


def _predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="top-5 classes of images or videos; label maps of images (segmentors)",
        description="Classify images or videos, or label the pixels of images (a segmentor: "
        "one colour-mapped label PNG per image in --out), with released weights (by zoo name) "
        "or a checkpoint, using the weights' own preprocessing.",
    )
    p.add_argument("--weights", help="a zoo name (nlgc weights list), a URL or a file")
    p.add_argument("--model", help="the registered network, where the file cannot tell")
    p.add_argument("inputs", nargs="+", metavar="PATH", help="image/video files or folders")
    p.add_argument("--top", type=positive_int, default=5)
    p.add_argument("--out", default="predictions", help="where a segmentor's label PNGs go")
    p.set_defaults(run=run_predict)


def _classify(model, report, args) -> list:
    from nlgc.inference import predict
    from nlgc.models import modality

    return predict(model, args.inputs, modality(report.model_name) == "video", args.top)


def _segment(model, report, args) -> list:
    from nlgc.inference import segment

    return segment(model, args.inputs, args.out)


# a model's task → what ``nlgc predict`` does with it
PREDICTIONS = {"classification": _classify, "video": _classify, "segmentation": _segment}


def run_predict(args) -> None:
    from nlgc.models import model_spec
    from nlgc.models.from_checkpoint import load_model

    if args.weights is None:
        raise ValueError("give --weights: a zoo name, a URL or a checkpoint file")
    model, report = load_model(args.weights, args.model)
    print(report)
    task = model_spec(report.model_name).task
    if task not in PREDICTIONS:
        raise ValueError(f"nlgc predict does not run {task} models ({report.model_name!r}) yet")
    for prediction in PREDICTIONS[task](model, report, args):
        print(prediction)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlgc", description="Non-local and GC networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="list the registered model names")
    models.add_argument("pattern", nargs="?", default="*")
    models.add_argument(
        "--task", choices=("classification", "video", "detection"), help="only this task's models"
    )
    models.set_defaults(run=run_models)
    _demo_parser(sub)
    _train_parsers(sub)
    _analyze_parser(sub)
    _predict_parser(sub)
    _weights_parser(sub)
    return parser


def run_models(args) -> None:
    from nlgc.models import describe, list_models

    for name in list_models(args.pattern, task=args.task):
        print(f"{name:<28} {describe(name)}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = sys.argv[1:] if argv is None else None  # None: called from Python
    try:
        args.run(args)
    except (ValueError, TypeError, OSError, ImportError) as error:  # OSError: downloads too
        print(f"nlgc {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
