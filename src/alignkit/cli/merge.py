"""``alignkit merge``: merge safetensors checkpoints (HF folders or bare .safetensors) into a loadable model.

    alignkit merge --method ties --base BASE --models A B --weights 0.5 0.5 --density 0.2 --output OUT

Methods: task_arithmetic, ties, dare (= dare_linear), dare_ties, magnitude_prune, wise_ft (``--base`` is
theta_0, one ``--models`` is theta_1, ``--alpha``), average (uniform or ``--weights``; ``--base`` optional).
Only safetensors are read; pickles are never loaded. The output folder gets the model's config and tokenizer
files (from --base, else the first --models folder) and ``merge.json``: the method, its hyper-parameters and the
SHA-256 of every input's and the output's weights (``OUT.merge.json`` beside a bare ``.safetensors``). Training
records of the inputs (meta.json, history.jsonl, config.yaml, ...) are not copied. See docs/merging.md.
"""

from __future__ import annotations

import argparse

from rich.console import Console

METHODS = (
    "task_arithmetic",
    "ties",
    "dare",
    "dare_linear",
    "dare_ties",
    "magnitude_prune",
    "wise_ft",
    "average",
)
# which optional flags each method reads (flags given to a method that ignores them are an error)
USES = {
    "task_arithmetic": {"weights", "scaling"},
    "ties": {"weights", "scaling", "density", "majority_sign", "merge", "scope", "convention"},
    "dare": {"weights", "scaling", "density", "drop_rate", "seed", "no_rescale", "convention"},
    "dare_ties": {
        "weights",
        "scaling",
        "density",
        "drop_rate",
        "seed",
        "no_rescale",
        "majority_sign",
        "merge",
        "convention",
    },
    "magnitude_prune": {"weights", "scaling", "density"},
    "wise_ft": {"alpha"},
    "average": {"weights"},
}
USES["dare_linear"] = USES["dare"]
FLAGS = (
    "weights",
    "scaling",
    "density",
    "drop_rate",
    "seed",
    "no_rescale",
    "majority_sign",
    "merge",
    "scope",
    "alpha",
    "convention",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="merge safetensors checkpoints (task arithmetic, TIES, DARE, WiSE-FT, average)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--base", help="the pre-trained model (HF folder or .safetensors); theta_0 for wise_ft")
    p.add_argument(
        "--models", nargs="+", required=True, help="fine-tuned models (HF folders or .safetensors)"
    )
    p.add_argument(
        "--output", required=True, help="output folder (HF model) or a path ending in .safetensors"
    )
    p.add_argument(
        "--weights", type=float, nargs="+", help="one weight per model (default 1 each; average: equal)"
    )
    p.add_argument("--scaling", type=float, help="lambda applied to the merged task vector (default 1.0)")
    p.add_argument(
        "--density", type=float, help="fraction kept: TIES/magnitude trim (default 0.2); DARE 1 - p"
    )
    p.add_argument("--drop-rate", type=float, help="DARE drop rate p (default 0.9)")
    p.add_argument("--seed", type=int, help="DARE mask seed (default 0)")
    p.add_argument("--no-rescale", action="store_true", default=None, help="DARE: do not divide by 1 - p")
    p.add_argument(
        "--majority-sign", choices=("total", "frequency"), help="TIES sign election (default total)"
    )
    p.add_argument(
        "--merge",
        choices=("mean", "sum"),
        help="disjoint mean or sum of the agreeing entries (default: TIES mean; DARE-TIES the convention's rule)",
    )
    p.add_argument(
        "--convention",
        choices=("mergekit", "peft"),
        help="ties/dare/dare_ties: how weights and DARE rescaling enter (default mergekit; see docs/merging.md)",
    )
    p.add_argument(
        "--scope", choices=("per_tensor", "global"), help="TIES trimming scope (default per_tensor)"
    )
    p.add_argument("--alpha", type=float, help="WiSE-FT mixing coefficient (default 0.5)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def resolved_defaults(method: str) -> dict:
    """The keyword defaults of the function ``--method`` calls (recorded with the flags given)."""
    import inspect

    from alignkit import merging
    from alignkit.merging.ties import magnitude_prune

    fn = {"dare_linear": merging.dare, "magnitude_prune": magnitude_prune}.get(method) or getattr(
        merging, method
    )
    fn = getattr(fn, "fn", fn)  # a registered component wraps the function
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.default is not p.empty and p.name != "progress"
    }


def run(args: argparse.Namespace) -> int:
    from alignkit.cli._quiet import quiet_transformers
    from alignkit.merging import Checkpoint, average, dare, dare_ties, save, task_arithmetic, ties, wise_ft
    from alignkit.merging.provenance import copy_model_files, write_provenance
    from alignkit.merging.ties import magnitude_prune

    quiet_transformers()
    method = args.method
    given = [f for f in FLAGS if getattr(args, f) is not None]
    unused = [f for f in given if f not in USES[method]]
    if unused:
        flag = "--" + unused[0].replace("_", "-")
        raise ValueError(f"{flag} is not used by --method {method}")
    if method != "average" and not args.base:
        raise ValueError(f"--method {method} needs --base")
    from pathlib import Path

    from alignkit.errors import OutputDirError

    out_path = Path(args.output).resolve()
    for src in ([args.base] if args.base else []) + list(args.models):
        if out_path == Path(src).resolve():  # the inputs are read lazily while the output is written
            raise OutputDirError(f"--output {args.output} is an input ({src}); choose another --output")
    base = Checkpoint(args.base) if args.base else None
    models = [Checkpoint(m) for m in args.models]
    progress = not args.quiet
    kw: dict = {"progress": progress}
    if args.weights is not None:
        kw["weights"] = args.weights
    if args.scaling is not None:
        kw["scaling"] = args.scaling

    if method in ("dare", "dare_linear", "dare_ties"):
        if args.density is not None and args.drop_rate is not None:
            raise ValueError("give --density (= 1 - p) or --drop-rate (p), not both")
        if args.density is not None:
            kw["drop_rate"] = 1.0 - args.density
        elif args.drop_rate is not None:
            kw["drop_rate"] = args.drop_rate
        if args.seed is not None:
            kw["seed"] = args.seed
        if args.no_rescale:
            kw["rescale"] = False
        if args.convention is not None:
            kw["convention"] = args.convention
        if method == "dare_ties":
            for f in ("majority_sign", "merge"):
                if getattr(args, f) is not None:
                    kw[f] = getattr(args, f)
            merged = dare_ties(base, models, **kw)
        else:
            merged = dare(base, models, **kw)
    elif method == "ties":
        for f in ("density", "majority_sign", "merge", "scope", "convention"):
            if getattr(args, f) is not None:
                kw[f] = getattr(args, f)
        merged = ties(base, models, **kw)
    elif method == "magnitude_prune":
        if args.density is not None:
            kw["density"] = args.density
        merged = magnitude_prune(base, models, **kw)
    elif method == "task_arithmetic":
        merged = task_arithmetic(base, models, **kw)
    elif method == "wise_ft":
        if len(models) != 1:
            raise ValueError(f"--method wise_ft takes one --models (theta_1), got {len(models)}")
        merged = wise_ft(base, models[0], alpha=0.5 if args.alpha is None else args.alpha, progress=progress)
    else:  # average
        merged = average(models, weights=args.weights, progress=progress)
        kw["weights"] = args.weights

    like = next((c.folder for c in ([base] if base else []) + models if c.folder is not None), None)
    out = save(
        merged, args.output
    )  # weights only; the model's config/tokenizer files and a fresh record below
    if out.is_dir():
        copy_model_files(like, out)
    hps = {k: v for k, v in kw.items() if k != "progress"}
    if method == "wise_ft":
        hps["alpha"] = 0.5 if args.alpha is None else args.alpha
    record = write_provenance(
        out,
        method=method,
        hyper_parameters={**resolved_defaults(method), **hps},
        base=args.base,
        models=args.models,
        config_from=like if out.is_dir() else None,
    )
    n = sum(t.numel() for t in merged.values())
    Console(stderr=True).print(
        f"merged {len(models)} model(s) with {method}: {len(merged)} tensors, {n:,} values -> {out} "
        f"(provenance: {record.name})"
    )
    return 0
