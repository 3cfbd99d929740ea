"""``model.summary()`` in tf.keras 2.x's table format (2.6: a model whose graph
is not a chain, with a merge layer such as Add, gets the "Connected to"
column, ``name[node][tensor]`` of each input, one per line)."""
import math


def _shape_str(layer):
    from ..layers import InputLayer
    shape = layer.output_shape
    return f"[{shape}]" if isinstance(layer, InputLayer) else str(shape)


def _type_name(layer):
    """The type column: Keras's "Functional" / "Sequential" for a nested model."""
    from ..models.nesting import is_nested
    if is_nested(layer):
        return "Sequential" if type(layer).__name__ == "Sequential" else "Functional"
    return type(layer).__name__


def _node_inputs(model, layer):
    """The tensors ``layer`` read in ``model`` (a nested model: its node's)."""
    from ..models.nesting import is_nested
    if is_nested(layer):
        return (model._nodes[layer]._inbound,)
    return layer.output._inputs if layer._output is not None else ()


def print_summary(model, line_length=None, positions=None, print_fn=None,
                  show_trainable=False):
    sequential_like = not any(layer._num_inputs > 1 for layer in model.layers)
    if sequential_like:
        line_length = line_length or 65
        positions = positions or [0.45, 0.85, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #"]
    else:
        line_length = line_length or 98
        positions = positions or [0.33, 0.55, 0.67, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]
    print_fn = print_fn or print
    if show_trainable:                      # tf.keras 2.9+: a "Trainable" column
        line_length += 11
        positions = positions + [line_length]
        header.append("Trainable")

    def row(fields):
        line = ""
        for i, field in enumerate(fields):
            if i > 0:
                line = line[:-1] + " "
            line += str(field)
            line = line[:positions[i]]
            line += " " * (positions[i] - len(line))
        print_fn(line)

    print_fn(f'Model: "{model.name}"')
    print_fn("_" * line_length)
    row(header)
    print_fn("=" * line_length)
    for i, layer in enumerate(model.layers):
        fields = [f"{layer.name} ({_type_name(layer)})", _shape_str(layer),
                  layer.count_params()]
        trainable = ["Y" if layer.trainable else "N"] if show_trainable else []
        if sequential_like:
            row(fields + trainable)
        else:
            inputs = _node_inputs(model, layer)
            links = [f"{t._layer.name}[0][0]" for t in inputs] or [""]
            row(fields + [links[0]] + trainable)
            for link in links[1:]:
                row(["", "", "", link] + ([""] if show_trainable else []))
        print_fn("=" * line_length if i == len(model.layers) - 1 else "_" * line_length)
    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    total = model.count_params()
    print_fn(f"Total params: {total:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {total - trainable:,}")
    print_fn("_" * line_length)
