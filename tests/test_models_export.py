"""Every named image model under torch.compile, channels_last and torch.export."""

import warnings
from copy import deepcopy

import pytest
import torch
from helpers import randomize_network

import nlgc

pytestmark = pytest.mark.slow
NAMED = nlgc.list_models(task="classification")
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


@pytest.fixture(scope="module")
def built(request):
    """The model named by the test's parameter with random weights, its input and the random
    state after drawing them: built once for all of this module's tests of that model (pytest
    runs them one after another), each of which takes :func:`model_and_input`."""
    torch.manual_seed(0)
    model = randomize_network(nlgc.create_model(request.param, num_classes=10)).eval()
    return model, torch.randn(2, 3, 64, 64), torch.get_rng_state()


def model_and_input(built, copy=True):
    """``built``'s model (a deep copy unless ``copy`` is False: compiling it channels_last
    changes it) and input, the random state as if the test had just built them."""
    model, x, state = built
    torch.set_rng_state(state)
    return (deepcopy(model) if copy else model), x.clone()


@pytest.mark.parametrize("built", NAMED, indirect=True)
def test_full_graph_capture_and_channels_last(built):
    model, x = model_and_input(built)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-4)
        model = model.to(memory_format=torch.channels_last)
        y = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("built", INDUCTOR, indirect=True)
def test_inductor_compile_channels_last(built):
    model, x = model_and_input(built)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        compiled = torch.compile(model)
        y = compiled(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(y, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("built", NAMED, indirect=True)
def test_torch_export(built):
    model, x = model_and_input(built, copy=False)  # export leaves the module as it is
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("built", ["nl_resnet50", "gc_resnet50"], indirect=True)
def test_onnx_export_of_a_backbone_runs_at_two_sizes(built, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model, x = model_and_input(built)
    path = tmp_path / "model.onnx"
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
