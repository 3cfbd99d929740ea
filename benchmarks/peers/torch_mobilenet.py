"""MobileNet v1 and v2 as plain ``torch.nn.Module`` s (NCHW, float32) with Keras's
layer names, so that aslnet's weights load by name.

(tests/reference/torch_mobilenet.py is a functional float64 training-mode
reference for gradient checks, not a module one would benchmark.)

Keras's stride-2 layers pad ((0, 1), (0, 1)) then convolve 'valid': that is a
``ZeroPad2d((0, 1, 0, 1))`` here (``padding=1`` would shift the windows);
stride-1 'same' 3x3 is ``padding=1``.  Batch norm: eps 1e-3, Keras momentum
0.99 = torch momentum 0.01 (v2: 0.999, 0.001).
"""
from collections import OrderedDict

import torch
from torch import nn

BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def _bn(c, momentum=0.01):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=momentum)


def build(arch, classes=1000, head=None, size=224):
    """The module of Keras's ``arch`` ('mobilenet' or 'mobilenet_v2') for ``size`` x
    ``size`` inputs; ``head``: the classifier's Keras name (default ImageNet's)."""
    if arch == "mobilenet":
        return MobileNetV1(classes, head or "conv_preds")
    if arch == "mobilenet_v2":
        return MobileNetV2(classes, head or "predictions", size=size)
    raise ValueError(f"unknown arch {arch!r}")


class KerasNamed(nn.Module):
    """What both versions share: ``self.features`` (Keras name -> module) run by
    ``trunk``, then average pooling and ``self.head`` (a ``Linear``, Keras name
    ``self.head_name``); loading Keras-layout weights by name, Keras's freeze."""

    def trunk(self, x):
        return self.features(x)

    def forward(self, x, logits=False):
        z = self.head(self.trunk(x).mean((2, 3)))
        return z if logits else torch.softmax(z, 1)

    def named_layers(self):
        """(Keras name, module) of every layer, head included."""
        return list(self.features.named_children()) + [(self.head_name, self.head)]

    @torch.no_grad()
    def load_keras_weights(self, weights):
        """Copy {Keras layer name: [arrays in Keras layouts]} into the modules."""
        for name, m in self.named_layers():
            if name not in weights:
                continue
            w = [torch.from_numpy(a.copy()) for a in weights[name]]
            if isinstance(m, nn.BatchNorm2d):
                for t, a in zip((m.weight, m.bias, m.running_mean, m.running_var), w):
                    t.copy_(a)
            elif isinstance(m, nn.Linear):
                kernel = w[0].reshape(-1, w[0].shape[-1])       # (1,1,in,out) or (in,out)
                m.weight.copy_(kernel.T)
                m.bias.copy_(w[1])
            elif m.groups > 1:                                  # depthwise (kh, kw, c, 1)
                m.weight.copy_(w[0][..., 0].permute(2, 0, 1).unsqueeze(1))
            else:                                               # HWIO -> OIHW
                m.weight.copy_(w[0].permute(3, 2, 0, 1))
        return self

    def freeze_like_keras(self, trainable):
        """Keras semantics of ``layer.trainable``: parameters of other layers get
        no gradient, their batch norms run in inference mode; trainable batch
        norms use batch statistics (train mode).  Call after ``train()``/
        ``eval()``, which reset the modes."""
        for name, m in self.named_layers():
            on = name in trainable
            for p in m.parameters():
                p.requires_grad_(on)
            if isinstance(m, nn.BatchNorm2d):
                m.train(on)
        return self


class MobileNetV1(KerasNamed):
    """``head``: Keras name of the classifier (a ``Linear`` on the pooled
    features: 'conv_preds' for ImageNet, the tutorial's 'dense').  forward
    returns softmax probabilities, or logits with ``logits=True``."""

    def __init__(self, classes=1000, head="conv_preds"):
        super().__init__()
        f = OrderedDict(conv1_pad=nn.ZeroPad2d((0, 1, 0, 1)),
                        conv1=nn.Conv2d(3, 32, 3, 2, bias=False), conv1_bn=_bn(32),
                        conv1_relu=nn.ReLU6())
        c = 32
        for k, (out, s) in enumerate(BLOCKS, start=1):
            if s == 2:
                f[f"conv_pad_{k}"] = nn.ZeroPad2d((0, 1, 0, 1))
            f[f"conv_dw_{k}"] = nn.Conv2d(c, c, 3, s, padding=1 if s == 1 else 0, groups=c,
                                          bias=False)
            f[f"conv_dw_{k}_bn"] = _bn(c)
            f[f"conv_dw_{k}_relu"] = nn.ReLU6()
            f[f"conv_pw_{k}"] = nn.Conv2d(c, out, 1, bias=False)
            f[f"conv_pw_{k}_bn"] = _bn(out)
            f[f"conv_pw_{k}_relu"] = nn.ReLU6()
            c = out
        self.features = nn.Sequential(f)
        self.head_name = head
        self.head = nn.Linear(c, classes)


# MobileNet v2: (expansion t, output channels c, repeats n, stride s of the first repeat)
V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1))


def _same_pad(n):
    """ZeroPad2d of Keras's stride-2 3x3 layers on an n x n map ('same' / correct_pad):
    the extra row and column after for an even n, one on each side for an odd n."""
    return nn.ZeroPad2d((0, 1, 0, 1) if n % 2 == 0 else (1, 1, 1, 1))


class MobileNetV2(KerasNamed):
    """MobileNetV2 (alpha 1.0) with torchvision's architecture -- 17 inverted-residual
    blocks (1x1 expand, BN, ReLU6, 3x3 depthwise, BN, ReLU6, 1x1 linear project, BN, add
    where stride 1 and the channels agree), 1x1 conv to 1280, BN, ReLU6, average pool,
    classifier -- but Keras's layer names and padding (``_same_pad`` before every
    stride-2 3x3 layer, for the input ``size`` given), batch norm momentum 0.999 (torch
    0.001), eps 1e-3.  ``head``: 'predictions' for ImageNet, the tutorial's 'dense'."""

    def __init__(self, classes=1000, head="predictions", size=224):
        super().__init__()
        bn = lambda c: _bn(c, momentum=0.001)   # noqa: E731
        n = size
        f = OrderedDict(Conv1_pad=_same_pad(n), Conv1=nn.Conv2d(3, 32, 3, 2, bias=False),
                        bn_Conv1=bn(32), Conv1_relu=nn.ReLU6())
        n = (n + 1) // 2
        self.blocks, c, k = [], 32, 0
        for t, out, repeats, first_stride in V2_STAGES:
            for i in range(repeats):
                s, p = (first_stride if i == 0 else 1), ("expanded_conv_" if k == 0
                                                         else f"block_{k}_")
                names, e = [], c * t
                if t != 1:
                    f[p + "expand"] = nn.Conv2d(c, e, 1, bias=False)
                    f[p + "expand_BN"], f[p + "expand_relu"] = bn(e), nn.ReLU6()
                    names += [p + "expand", p + "expand_BN", p + "expand_relu"]
                if s == 2:
                    f[p + "pad"] = _same_pad(n)
                    names.append(p + "pad")
                    n = (n + 1) // 2
                f[p + "depthwise"] = nn.Conv2d(e, e, 3, s, padding=1 if s == 1 else 0,
                                               groups=e, bias=False)
                f[p + "depthwise_BN"], f[p + "depthwise_relu"] = bn(e), nn.ReLU6()
                f[p + "project"] = nn.Conv2d(e, out, 1, bias=False)
                f[p + "project_BN"] = bn(out)
                names += [p + "depthwise", p + "depthwise_BN", p + "depthwise_relu",
                          p + "project", p + "project_BN"]
                self.blocks.append((names, s == 1 and c == out))
                c, k = out, k + 1
        f["Conv_1"] = nn.Conv2d(c, 1280, 1, bias=False)
        f["Conv_1_bn"], f["out_relu"] = bn(1280), nn.ReLU6()
        self.features = nn.ModuleDict(f)
        self.head_name = head
        self.head = nn.Linear(1280, classes)

    def trunk(self, x):
        m = self.features
        for name in ("Conv1_pad", "Conv1", "bn_Conv1", "Conv1_relu"):
            x = m[name](x)
        for names, residual in self.blocks:
            y = x
            for name in names:
                y = m[name](y)
            x = x + y if residual else y
        for name in ("Conv_1", "Conv_1_bn", "out_relu"):
            x = m[name](x)
        return x
