"""The word classifier (ResNet-18 + MS-TCN): parameter count against the reference, shapes, lengths, AdamW."""
from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

import model.adamw  # noqa: F401 (registers "adamw")
from model.word_net import FrameStackConv, GemmConv, Swish, WordNet, WordNetConfig, count_trainable, prepare_word_net

SMALL = {"num_classes": 6, "width_mult": 0.125, "tcn_width_mult": 0.125}


def test_reference_configuration_has_the_reference_parameter_count():
    """lrw_resnet18_mstcn with 500 classes: 36,361,396 trainable parameters in the PyTorch reference."""
    net = WordNet(WordNetConfig(num_classes=500))  # every shape is known without initialising
    assert count_trainable(net) == 36_361_396
    # Batch-norm running statistics exist but are not trained.
    frozen = [p for p in net.collect_params().values() if p.grad_req == "null"]
    assert frozen and all(p.name.endswith(("running_mean", "running_var")) for p in frozen)


@pytest.mark.parametrize("relu_type,extra", [("relu", 0), ("prelu", 13_120)])
def test_activation_choice(relu_type: str, extra: int):
    """PReLU adds one slope per channel of every activation, as the reference's prelu does."""
    net = WordNet(WordNetConfig(num_classes=500, relu_type=relu_type))
    assert count_trainable(net) == 36_361_396 + extra


def test_output_shape_and_training_step():
    net = WordNet(WordNetConfig(**SMALL))
    net.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    data = mx.nd.random.normal(shape=(3, 1, 29, 40, 40))
    lengths = mx.nd.full((3,), 29)
    assert net(data, lengths).shape == (3, 6)
    trainer = gluon.Trainer(net.collect_params(), "adamw", {"learning_rate": 1e-3, "wd": 1e-4})
    before = net.output.weight.data().asnumpy().copy()
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(data, lengths), mx.nd.array([0, 1, 2]))
    loss.backward()
    trainer.step(3)
    assert np.isfinite(loss.asnumpy()).all()
    assert not np.allclose(before, net.output.weight.data().asnumpy())


@pytest.mark.parametrize("training_kernels", [True, False])
def test_front_end_is_the_reference_conv3d(training_kernels: bool):
    """The per-frame 2-D convolution of stacked neighbours (padded to 8 channels for training or not) gives the
    Conv3D(1->C, 5x7x7, stride 1x2x2, padding 2x3x3) of every frame, and the same weight gradient."""
    conv = FrameStackConv(8, (5, 7, 7), 2)
    conv.initialize()
    conv.training_kernels = training_kernels
    conv.hybridize()
    data = mx.nd.random.normal(shape=(2, 1, 7, 20, 20))
    weight = conv.weight.data().copy()
    weight.attach_grad()
    head = mx.nd.random.normal(shape=(14, 8, 10, 10))
    with autograd.record():
        ours = conv(data)
    ours.backward(head)
    with autograd.record():
        ref = mx.nd.Convolution(data, weight, kernel=(5, 7, 7), stride=(1, 2, 2), pad=(2, 3, 3), num_filter=8,
                                no_bias=True)
        ref = ref.transpose((0, 2, 1, 3, 4)).reshape((-3, -2))  # (N*T, C, H, W)
    ref.backward(head)
    assert ours.shape == (14, 8, 10, 10)
    np.testing.assert_allclose(ours.asnumpy(), ref.asnumpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv.weight.grad().asnumpy(), weight.grad.asnumpy(), rtol=1e-4, atol=1e-3)
    x = mx.nd.random.normal(shape=(2, 3, 4, 4)) * 4
    np.testing.assert_allclose(Swish()(x).asnumpy(), gluon.nn.Swish()(x).asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel,dilation,bias", [((3, 3), 1, False), ((7, 1), 4, True)])
def test_matrix_product_convolution_is_the_convolution(kernel: tuple[int, int], dilation: int, bias: bool):
    """GemmConv (im2col and a matrix product) gives the "same" convolution's output and gradients, as does its
    oneDNN form for reading (direct_inference, training_kernels off)."""
    conv = GemmConv(16, 8, kernel, dilation, use_bias=bias, direct_inference=True)
    conv.initialize()
    if bias:
        conv.bias.set_data(mx.nd.random.normal(shape=(16,)))
    data = mx.nd.random.normal(shape=(3, 8, 9, 5) if kernel[1] > 1 else (3, 8, 29, 1))
    data.attach_grad()
    head = mx.nd.random.normal(shape=(3, 16) + data.shape[2:])
    pad = tuple((k - 1) * dilation // 2 for k in kernel)
    ref = mx.nd.Convolution(data, conv.weight.data(), conv.bias.data() if bias else None, kernel=kernel, pad=pad,
                            dilate=(dilation, dilation), num_filter=16, no_bias=not bias)
    results = []
    for training_kernels in (True, False):
        conv.training_kernels = training_kernels
        conv.hybridize()  # a new graph
        with autograd.record():
            out = conv(data)
        out.backward(head)
        results.append([out.asnumpy(), data.grad.asnumpy().copy(), conv.weight.grad().asnumpy().copy()])
        np.testing.assert_allclose(out.asnumpy(), ref.asnumpy(), rtol=1e-4, atol=1e-4)
    for gemm, direct in zip(*results):
        np.testing.assert_allclose(gemm, direct, rtol=1e-4, atol=1e-4)


def test_prepared_network_gives_the_same_scores():
    """prepare_word_net (oneDNN's fused graph on the CPU: batch norms folded into convolutions) changes no score."""
    net = WordNet(WordNetConfig(**SMALL, size=40))
    net.initialize()
    for name, param in net.collect_params().items():  # batch norms that do something
        if name.endswith(("running_mean", "beta", "bias")):
            param.set_data(mx.nd.random.normal(0, 0.2, shape=param.shape))
        elif name.endswith(("running_var", "gamma")):
            param.set_data(mx.nd.random.uniform(0.5, 2, shape=param.shape))
    data = mx.nd.random.normal(shape=(2, 1, 29, 40, 40))
    lengths = mx.nd.array([29, 20])
    expected = net(data, lengths).asnumpy()
    prepare_word_net(net, [mx.cpu()])
    np.testing.assert_allclose(net(data, lengths).asnumpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(net(data[:1], lengths[:1]).asnumpy(), expected[:1], rtol=1e-4, atol=1e-4)


def test_dwpw_branches_and_config_checks():
    net = WordNet(WordNetConfig(**SMALL, tcn_dwpw=True))
    net.initialize()
    assert net(mx.nd.zeros((1, 1, 29, 40, 40)), mx.nd.full((1,), 29)).shape == (1, 6)
    with pytest.raises(ValueError, match="relu_type"):
        WordNetConfig(relu_type="tanh")
    with pytest.raises(ValueError, match="odd"):
        WordNetConfig(tcn_kernel_size=(3, 4))


def test_time_average_covers_real_frames_only():
    """A clip's score averages the TCN's output over its own length: frames after it are ignored."""
    net = WordNet(WordNetConfig(**SMALL, tcn_num_layers=1, tcn_kernel_size=(1,)))
    net.initialize()
    data = mx.nd.random.normal(shape=(1, 1, 29, 40, 40))
    changed = data.copy()
    changed[:, :, 20:] = 5.0  # kernel size 1 in time and the front-end's 5 frames: 18 and earlier stay the same
    with autograd.predict_mode():
        a = net(data, mx.nd.array([16])).asnumpy()
        b = net(changed, mx.nd.array([16])).asnumpy()
        c = net(changed, mx.nd.array([29])).asnumpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(a, c, atol=1e-3)


def test_adamw_matches_decoupled_weight_decay():
    """AdamW as PyTorch's: w <- w * (1 - lr * wd), then the bias-corrected Adam step."""
    weight, grad = mx.nd.array([1.0, -2.0, 3.0]), mx.nd.array([0.5, 0.1, -0.3])
    opt = mx.optimizer.create("adamw", learning_rate=0.1, wd=0.01)
    state = opt.create_state(0, weight)
    w, m, v, g = weight.asnumpy().astype(np.float64), np.zeros(3), np.zeros(3), grad.asnumpy()
    for t in range(1, 4):
        opt.update(0, weight, grad, state)
        w = w * (1 - 0.1 * 0.01)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
        w = w - 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(weight.asnumpy(), w, rtol=1e-5)
