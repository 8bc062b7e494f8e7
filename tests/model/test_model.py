"""The LipNet block and its checkpoints."""
import re
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from model.checkpoint import EXAMPLE_MEAN, EXAMPLE_STD, load_lipnet, save_checkpoint
from model.lipnet import InstanceNorm, LipNet, LipNetConfig, prepare_for_inference


def _reference_shapes(shared_dir: Path) -> dict[str, tuple[int, ...]]:
    text = (shared_dir / "reference" / "example_checkpoint.md").read_text()
    section = text.split("## Names and shapes as MXNet 1.9.1 writes them", 1)[1].split("##", 1)[0]
    rows = re.findall(r"^\|\s*([\w.]+)\s*\|\s*\(([\d, ]+)\)\s*\|", section, re.M)
    return {name: tuple(int(v) for v in dims.split(",") if v.strip()) for name, dims in rows}


def _shapes(net: LipNet) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in net._collect_params_with_prefix().items()}


@pytest.mark.parametrize("variant,features", [("paper", 1728), ("example", 2688)])
def test_output_shape_and_log_probabilities(variant: str, features: int):
    net = LipNet(LipNetConfig(variant=variant))
    net.initialize()
    out = net(mx.nd.random.uniform(shape=(2, 3, 75, 50, 100)))
    assert out.shape == (2, 75, 28)
    np.testing.assert_allclose(np.exp(out.asnumpy()).sum(-1), 1.0, rtol=1e-4)
    assert _shapes(net)["gru1._unfused.0.l_cell.i2h_weight"] == (768, features)


def test_example_variant_names_and_shapes_equal_reference(shared_dir: Path):
    reference = _reference_shapes(shared_dir)
    assert len(reference) == 30
    net = LipNet(LipNetConfig(variant="example"))
    net.initialize()
    assert _shapes(net) == reference


def test_saved_example_file_has_the_reference_names(shared_dir: Path, tmp_path: Path):
    net = LipNet(LipNetConfig(variant="example"))
    net.initialize()
    net.save_parameters(str(tmp_path / "ex.params"))
    saved = mx.nd.load(str(tmp_path / "ex.params"))
    assert {k: tuple(v.shape) for k, v in saved.items()} == _reference_shapes(shared_dir)


def test_example_file_in_old_recurrent_naming_loads(tmp_path: Path):
    net = LipNet(LipNetConfig(variant="example"))
    net.initialize()
    net(mx.nd.zeros((1, 3, 75, 50, 100)))
    old = {}
    for name, param in net._collect_params_with_prefix().items():
        m = re.match(r"(gru\d)\._unfused\.0\.([lr])_cell\.(\w+)", name)
        old[f"{m.group(1)}.{m.group(2)}0_{m.group(3)}" if m else name] = param.data()
    assert "gru1.l0_i2h_weight" in old
    mx.nd.save(str(tmp_path / "epoches_81_loss_15.7157"), old)
    loaded = load_lipnet(tmp_path / "epoches_81_loss_15.7157")
    assert loaded.config.variant == "example"
    assert loaded.mean == EXAMPLE_MEAN and loaded.std == EXAMPLE_STD
    x = mx.nd.random.uniform(shape=(1, 3, 75, 50, 100))
    np.testing.assert_allclose(loaded.net(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hybridize", [False, True])
def test_instance_norm_equals_gluons_in_values_and_gradients(hybridize: bool):
    x = mx.nd.random.normal(2, 3, shape=(3, 5, 4, 6, 7))
    gamma, beta = mx.nd.random.uniform(0.5, 2, shape=(5,)), mx.nd.random.uniform(-1, 1, shape=(5,))
    results = []
    for block in (InstanceNorm(5), gluon.nn.InstanceNorm(in_channels=5)):
        block.initialize()
        block.gamma.set_data(gamma)
        block.beta.set_data(beta)
        if hybridize:
            block.hybridize()
        x.attach_grad()
        with autograd.record():
            y = block(x)
        y.backward(mx.nd.arange(y.size).reshape(y.shape) % 7 - 3)
        assert block.gamma.grad_req == "null"  # Gluon's default: a learnt shift, a fixed scale
        results.append([y.asnumpy(), x.grad.asnumpy(), block.beta.grad().asnumpy()])
    for ours, gluons in zip(*results):
        np.testing.assert_allclose(ours, gluons, rtol=1e-4, atol=1e-4)


def test_fused_inference_graph_gives_the_same_outputs():
    net = LipNet(LipNetConfig(variant="example", dropout=0.0))
    net.initialize(mx.init.Xavier())
    for param in net.collect_params(".*beta|.*gamma").values():
        param.set_data(mx.nd.random.uniform(0.5, 1.5, shape=param.shape))
    x = mx.nd.random.uniform(shape=(1, 3, 75, 50, 100))
    plain = net(x).asnumpy()
    prepare_for_inference(net, [mx.cpu()])
    np.testing.assert_allclose(net(x).asnumpy(), plain, rtol=1e-4, atol=1e-4)


def test_prepared_network_follows_changing_batch_sizes_and_lengths():
    """The prepared graph keeps its shapes and operator state between calls (static_shape): a call with
    other shapes must plan again, not reuse what the last shapes left."""
    net = LipNet(LipNetConfig(channels=(4, 8, 8), hidden=16, height=24, width=48))
    net.initialize()
    reference = LipNet(net.config)
    reference.initialize()
    for name, param in reference._collect_params_with_prefix().items():
        param.set_data(net._collect_params_with_prefix()[name].data())
    prepare_for_inference(net, [mx.cpu()])
    for shape, length in [((1, 3, 20, 24, 48), 20), ((3, 3, 12, 24, 48), 7), ((1, 3, 20, 24, 48), 20),
                          ((3, 3, 12, 24, 48), 12)]:
        x = mx.nd.random.uniform(shape=shape)
        lengths = mx.nd.array([length] + [shape[2]] * (shape[0] - 1))
        np.testing.assert_allclose(net.read(x, lengths).asnumpy(), reference.read(x, lengths).asnumpy(),
                                   rtol=1e-4, atol=1e-5)


class _PaperOrder(LipNet):
    """ReLU, dropout and pooling in the paper's order, which LipNet reorders to pool first."""

    def _stage(self, F, x, conv, norm, mask=None):  # noqa: ANN001, ANN202
        x = conv(x)
        if norm is not None:
            x = norm(x) if mask is None else norm(x, mask)
        x = self.pool(self.dropout(F.Activation(x, act_type="relu")))
        return x if mask is None else F.broadcast_mul(x, mask)


@pytest.mark.parametrize(("norm", "dropout"), [("none", 0.5), ("instance", 0.3)])
def test_pooling_before_relu_and_dropout_gives_the_paper_orders_values_and_gradients(norm: str, dropout: float):
    config = LipNetConfig(channels=(4, 8, 8), hidden=16, height=24, width=48, norm=norm, dropout=dropout)
    x = mx.nd.random.normal(shape=(3, 3, 12, 24, 48))
    label = mx.nd.array([[1, 2, 3], [4, 5, -1], [6, -1, -1]])
    loss_fn = gluon.loss.CTCLoss(layout="NTC", label_layout="NT")
    ours = LipNet(config)
    ours.initialize()
    paper = _PaperOrder(config)
    paper.initialize()
    for name, param in paper._collect_params_with_prefix().items():
        param.set_data(ours._collect_params_with_prefix()[name].data())
    results = []
    for net in (ours, paper):
        net.hybridize(static_alloc=True, static_shape=True)
        values = []
        for lengths in ([12, 12, 12], [12, 7, 5]):
            lengths = mx.nd.array(lengths)
            mx.random.seed(5)  # the same dropout masks for both orders
            with autograd.record():
                loss = loss_fn(net.read(x, lengths), label, lengths)
            loss.backward()
            values += [loss.asnumpy()] + [p.grad().asnumpy() for p in net.collect_params().values()
                                          if p.grad_req != "null"]
        results.append(values)
    assert len(results[0]) == len(results[1])
    for reordered, in_order in zip(*results):
        np.testing.assert_array_equal(reordered, in_order)


def test_packed_gru_follows_weights_loaded_after_it_was_packed():
    net = LipNet(LipNetConfig(channels=(4, 8, 8), hidden=16, height=24, width=48))
    net.initialize()
    x = mx.nd.random.uniform(shape=(2, 3, 20, 24, 48))
    prepare_for_inference(net, [mx.cpu()])
    first = net(x).asnumpy()
    for param in net.gru2.collect_params(".*weight").values():
        param.set_data(param.data() * 1.5)
    reference = LipNet(net.config)
    reference.initialize()
    for name, param in reference._collect_params_with_prefix().items():
        param.set_data(net._collect_params_with_prefix()[name].data())
    prepare_for_inference(net, [mx.cpu()])  # packs again
    assert net._collect_params_with_prefix().keys() == reference._collect_params_with_prefix().keys()  # saved as before
    np.testing.assert_allclose(net(x).asnumpy(), reference(x).asnumpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(net(x).asnumpy(), first)


@pytest.mark.parametrize("norm", ["none", "instance", "batch"])
def test_gradients_flow_to_every_parameter(norm: str):
    net = LipNet(LipNetConfig(channels=(4, 8, 8), hidden=16, height=24, width=48, norm=norm))
    net.initialize()
    loss_fn = gluon.loss.CTCLoss(layout="NTC", label_layout="NT")
    x = mx.nd.random.uniform(shape=(2, 3, 20, 24, 48))
    label = mx.nd.array([[1, 2, 3], [4, 5, -1]])
    with autograd.record():
        loss = loss_fn(net(x), label)
    loss.backward()
    for name, param in net.collect_params().items():
        if param.grad_req != "null":  # BatchNorm's running statistics have no gradient
            assert float(mx.nd.abs(param.grad()).sum().asscalar()) > 0, name


def test_our_checkpoint_round_trip_needs_no_flags(tmp_path: Path):
    config = LipNetConfig(channels=(4, 8, 8), hidden=16, height=24, width=48)
    net = LipNet(config)
    net.initialize()
    x = mx.nd.random.uniform(shape=(1, 3, 10, 24, 48))
    expected = net(x).asnumpy()
    save_checkpoint(tmp_path / "run" / "best", net, None,
                    {"normalisation": {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}})
    for path in (tmp_path / "run", tmp_path / "run" / "best", tmp_path / "run" / "best" / "model.params"):
        loaded = load_lipnet(path)
        assert loaded.config == config and loaded.mean == (0.1, 0.2, 0.3)
        np.testing.assert_allclose(loaded.net(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_missing_checkpoint_gives_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_lipnet(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint here"):
        load_lipnet(tmp_path / "empty")


def test_corrupt_checkpoint_gives_clear_error(tmp_path: Path):
    bad = tmp_path / "bad.params"
    bad.write_bytes(b"this is not an MXNet file" * 10)
    with pytest.raises(ValueError, match="bad.params: not a readable MXNet parameter file"):
        load_lipnet(bad)
    folder = tmp_path / "run" / "last"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text("{ truncated")
    with pytest.raises(ValueError, match="meta.json: not a readable checkpoint description"):
        load_lipnet(tmp_path / "run")


def test_parameters_of_another_shape_are_refused(tmp_path: Path):
    net = LipNet(LipNetConfig(variant="example"))
    net.initialize()
    arrays = {k: p.data() for k, p in net._collect_params_with_prefix().items()}
    arrays["dense.weight"] = mx.nd.zeros((28, 100))
    mx.nd.save(str(tmp_path / "odd.params"), arrays)
    with pytest.raises(ValueError, match="dense.weight"):
        load_lipnet(tmp_path / "odd.params")


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("norm", ["none", "instance", "batch"])
def test_a_clip_padded_in_a_batch_reads_as_the_clip_alone(norm: str, hybridize: bool):
    """The bidirectional GRUs and the temporal convolutions never see the padding past a clip's length."""
    mx.random.seed(3)
    net = LipNet(LipNetConfig(channels=(4, 8, 8), hidden=16, height=24, width=48, norm=norm))
    net.initialize()
    for param in net.collect_params(".*beta|.*gamma|.*running.*").values():  # norms that are not identities
        param.set_data(mx.nd.random.uniform(0.5, 1.5, shape=param.shape))
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    batch = mx.nd.random.normal(shape=(3, 3, 30, 24, 48))
    lengths = mx.nd.array([30, 7, 12])
    padded = net.read(batch, lengths).asnumpy()
    for i in (1, 2):
        n = int(lengths[i].asscalar())
        alone = net(batch[i:i + 1, :, :n]).asnumpy()[0]
        np.testing.assert_allclose(padded[i, :n], alone, rtol=0, atol=1e-5)
        # without the lengths the padding changes the clip's outputs: the test can fail
        assert np.abs(net(batch).asnumpy()[i, :n] - alone).max() > 1e-3
    np.testing.assert_allclose(padded[0], net(batch[0:1]).asnumpy()[0], rtol=0, atol=1e-5)


def test_full_length_batches_take_the_fused_path_with_the_same_values():
    net = LipNet(LipNetConfig(channels=(4, 8, 8), hidden=16, height=24, width=48))
    net.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=(2, 3, 20, 24, 48))
    full = mx.nd.array([20, 20])
    fused = net.read(x, full).asnumpy()
    assert net._padded_view.block is None  # read() took net(x), and built no second graph
    np.testing.assert_allclose(net.padded(x, full).asnumpy(), fused, rtol=0, atol=1e-5)
    assert "padded" not in repr(net)
    prepare_for_inference(net, [mx.cpu()])  # packed GRU weights: both paths still agree
    short = mx.nd.array([20, 9])
    np.testing.assert_allclose(net.read(x, short).asnumpy()[1, :9], net(x[1:2, :, :9]).asnumpy()[0], atol=1e-5)


def test_prepared_network_reads_short_batches_through_one_hot_steps_with_the_same_values():
    """``GRU._run_one_hot_steps`` replaces the GRUs' input term after prepare_for_inference on the CPU, while
    N*T is at most the smallest GRU input (here 24 features from conv3, 32 into gru2)."""
    net = LipNet(LipNetConfig(channels=(4, 8, 8), hidden=16, height=24, width=48))
    net.initialize()
    for gru in (net.gru1, net.gru2):  # biases that are not zero, so that their place in the weights matters
        for param in gru.collect_params(".*bias").values():
            param.set_data(mx.nd.random.uniform(-0.5, 0.5, shape=param.shape))
    single = mx.nd.random.normal(shape=(1, 3, 20, 24, 48))
    pair = mx.nd.random.normal(shape=(2, 3, 20, 24, 48))  # 40 steps: more than 24, so the fused GRU reads it
    expected = [net(x).asnumpy() for x in (single, pair)]
    prepare_for_inference(net, [mx.cpu()])
    view = net._one_hot_view.block
    calls = []

    def spy(x: mx.nd.NDArray) -> mx.nd.NDArray:
        calls.append(x.shape)
        return view(x)

    net._one_hot_view.block = spy
    np.testing.assert_allclose(net.read(single).asnumpy(), expected[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(net.read(pair).asnumpy(), expected[1], rtol=0, atol=1e-5)
    assert calls == [single.shape]


def test_padded_path_trains_every_parameter():
    net = LipNet(LipNetConfig(channels=(4, 8, 8), hidden=16, height=24, width=48, norm="instance"))
    net.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    loss_fn = gluon.loss.CTCLoss(layout="NTC", label_layout="NT")
    x = mx.nd.random.uniform(shape=(2, 3, 20, 24, 48))
    lengths = mx.nd.array([20, 8])
    with autograd.record():
        loss = loss_fn(net.read(x, lengths), mx.nd.array([[1, 2, 3], [4, 5, -1]]), lengths)
    loss.backward()
    for name, param in net.collect_params().items():
        if param.grad_req != "null":
            assert float(mx.nd.abs(param.grad()).sum().asscalar()) > 0, name
