"""MobileNet v1 as a plain ``torch.nn.Module`` (NCHW, float32) with Keras's
layer names, so that aslnet's weights load by name.

(tests/reference/torch_mobilenet.py is a functional float64 training-mode
reference for gradient checks, not a module one would benchmark.)

Keras's stride-2 layers pad ((0, 1), (0, 1)) then convolve 'valid': that is a
``ZeroPad2d((0, 1, 0, 1))`` here (``padding=1`` would shift the windows);
stride-1 'same' 3x3 is ``padding=1``.  Batch norm: eps 1e-3, Keras momentum
0.99 = torch momentum 0.01.
"""
from collections import OrderedDict

import torch
from torch import nn

BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MobileNetV1(nn.Module):
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

    def forward(self, x, logits=False):
        z = self.head(self.features(x).mean((2, 3)))
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
