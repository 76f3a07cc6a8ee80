"""Every named image model under torch.compile, channels_last and torch.export."""

import warnings

import pytest
import torch
from helpers import randomize_network

import nlgc

pytestmark = pytest.mark.slow
NAMED = nlgc.list_models(modality="image")
# One model per kind of block (and grouped convolutions) also goes through inductor's codegen;
# the deeper variants run the same code and are checked with full-graph capture (aot_eager).
INDUCTOR = [
    "resnet50",
    "gc_resnet50",
    "nl_resnet50",
    "snl_resnet50",
    "se_resnet50",
    "resnext50_32x4d",
]


def model_and_input(name):
    torch.manual_seed(0)
    model = randomize_network(nlgc.create_model(name, num_classes=10))
    return model.eval(), torch.randn(2, 3, 64, 64)


@pytest.mark.parametrize("name", NAMED)
def test_full_graph_capture_and_channels_last(name):
    model, x = model_and_input(name)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-4)
        model = model.to(memory_format=torch.channels_last)
        y = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", INDUCTOR)
def test_inductor_compile_channels_last(name):
    model, x = model_and_input(name)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        compiled = torch.compile(model)
        y = compiled(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(y, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", NAMED)
def test_torch_export(name):
    model, x = model_and_input(name)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["nl_resnet50", "gc_resnet50"])
def test_onnx_export_of_a_backbone_runs_at_two_sizes(name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model, x = model_and_input(name)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dynamic = ({d: torch.export.Dim.AUTO for d in (0, 2, 3)},)
        torch.onnx.export(model, (x,), path, dynamic_shapes=dynamic, verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    for shape in [(2, 3, 64, 64), (1, 3, 96, 128)]:
        image = torch.randn(shape)
        (y,) = session.run(None, {session.get_inputs()[0].name: image.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(y), model(image), rtol=1e-4, atol=1e-4)
