"""``nnbin export``: a saved model as an ONNX inference graph."""

from __future__ import annotations

import argparse

HELP = "write a saved model as an ONNX inference graph"


DESCRIPTION = (
    "The inference graph of a saved model as ONNX, built by running "
    "nnbin's own forward pass on ndonnx arrays: input X (any number of rows, the "
    "model's features, its dtype), outputs probability (N, 1) and label (N, 1, int64). "
    "Needs pip install 'nnbin[onnx]'."
)


def flags(ex: argparse.ArgumentParser) -> None:
    ex.add_argument("model", metavar="MODEL", help="a model file saved by nnbin train --save")
    ex.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")


def run(args: argparse.Namespace) -> int:
    from .. import export
    from ..files import check_outputs
    from ..modelfile import load

    export.require()  # before anything else: one line naming the extra
    check_outputs({"--onnx": args.onnx}, {"MODEL": args.model})
    model = load(args.model, backend="numpy")
    export.export_onnx(
        model.params,
        args.onnx,
        metadata=export.model_metadata(model),
        activation=model.activation,
    )
    print(
        f"ONNX graph written to {args.onnx}: input {export.INPUT} (N, {model.n_features}) "
        f"{model.dtype}, outputs {', '.join(export.OUTPUTS)}"
    )
    return 0
