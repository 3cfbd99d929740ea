"""NumPy float64 twins of Keras 3's optimizer updates (keras/src/optimizers/*.py and
BaseOptimizer.apply: clip the gradients, decay the weights, then the rule), independent of
TensorFlow and of aslnet.  Hyper-parameters are taken at the float32 values the C core
stores (``f32``), so a twin and the core differ by float32 rounding only."""

import math

import numpy as np


def f32(v):
    return float(np.float32(v))


def slot_names(kind, cfg):
    """The C core's slot order (csrc/aslnet.h)."""
    mom = f32(cfg.get("momentum", 0.0))
    return {"sgd": ["momentum"] if mom != 0 else [],
            "adam": ["m", "v"] + (["v_hat"] if cfg.get("amsgrad") else []),
            "adamw": ["m", "v"] + (["v_hat"] if cfg.get("amsgrad") else []),
            "rmsprop": ["velocity"] + (["momentum"] if mom > 0 else [])
            + (["average_gradient"] if cfg.get("centered") else []),
            "adagrad": ["accumulator"],
            "nadam": ["m", "v"]}[kind]


class Twin:
    def __init__(self, kind, cfg, weights):
        self.kind, self.cfg = kind, dict(cfg)
        self.w = [np.asarray(w, np.float64).copy() for w in weights]
        init = f32(cfg.get("initial_accumulator_value", 0.1)) if kind == "adagrad" else 0.0
        self.slots = {n: [np.full_like(w, init) for w in self.w]
                      for n in slot_names(kind, cfg)}
        self.t = 0
        self.u_product = 1.0

    def _clip(self, grads):
        c = self.cfg
        if c.get("clipnorm"):
            cn = f32(c["clipnorm"])
            return [g * cn / max(np.sqrt(np.sum(g * g)), cn) for g in grads]
        if c.get("global_clipnorm"):
            cn = f32(c["global_clipnorm"])
            norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
            return [g * cn * min(1 / norm, 1 / cn) for g in grads]
        if c.get("clipvalue"):
            cv = f32(c["clipvalue"])
            return [np.clip(g, -cv, cv) for g in grads]
        return grads

    def step(self, grads, lr):
        c, k = self.cfg, self.kind
        lr = f32(lr)
        grads = self._clip([np.asarray(g, np.float64) for g in grads])
        if c.get("weight_decay"):
            wd = f32(c["weight_decay"])
            self.w = [w - w * wd * lr for w in self.w]
        self.t += 1
        t = self.t
        b1, b2 = f32(c.get("beta_1", 0.9)), f32(c.get("beta_2", 0.999))
        eps = f32(c.get("epsilon", 1e-7))
        if k == "nadam":
            self.u_product *= b1 * (1 - 0.5 * 0.96 ** t)
        for i, (w, g) in enumerate(zip(self.w, grads)):
            s = {n: v[i] for n, v in self.slots.items()}
            if k == "sgd":
                mom = f32(c.get("momentum", 0.0))
                if mom:
                    s["momentum"][...] = mom * s["momentum"] - lr * g
                    w += (mom * s["momentum"] - lr * g) if c.get("nesterov") else s["momentum"]
                else:
                    w -= lr * g
            elif k in ("adam", "adamw"):
                s["m"] += (g - s["m"]) * (1 - b1)
                s["v"] += (g * g - s["v"]) * (1 - b2)
                v = s["v"]
                if c.get("amsgrad"):
                    s["v_hat"][...] = np.maximum(s["v_hat"], s["v"])
                    v = s["v_hat"]
                alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                w -= s["m"] * alpha / (np.sqrt(v) + eps)
            elif k == "rmsprop":
                rho, mom = f32(c.get("rho", 0.9)), f32(c.get("momentum", 0.0))
                s["velocity"][...] = rho * s["velocity"] + (1 - rho) * g * g
                if c.get("centered"):
                    a = s["average_gradient"]
                    a[...] = rho * a + (1 - rho) * g
                    den = s["velocity"] - a * a + eps
                else:
                    den = s["velocity"] + eps
                inc = lr * g / np.sqrt(den)
                if mom > 0:
                    s["momentum"][...] = mom * s["momentum"] + inc
                    w -= s["momentum"]
                else:
                    w -= inc
            elif k == "adagrad":
                s["accumulator"] += g * g
                w -= lr * g / np.sqrt(s["accumulator"] + eps)
            elif k == "nadam":
                u_t = b1 * (1 - 0.5 * 0.96 ** t)
                u_t1 = b1 * (1 - 0.5 * 0.96 ** (t + 1))
                up_t, up_t1 = self.u_product, self.u_product * u_t1
                s["m"] += (g - s["m"]) * (1 - b1)
                s["v"] += (g * g - s["v"]) * (1 - b2)
                m_hat = u_t1 * s["m"] / (1 - up_t1) + (1 - u_t) * g / (1 - up_t)
                v_hat = s["v"] / (1 - b2 ** t)
                w -= m_hat * lr / (np.sqrt(v_hat) + eps)
            else:
                raise ValueError(k)
