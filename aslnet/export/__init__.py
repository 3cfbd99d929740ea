"""Exporting a model for other runtimes: ``model.export(path, format="onnx")``
(Keras 3's name and signature).  ONNX is the format aslnet writes; Keras's
others (``tf_saved_model``, ``openvino``, ``litert``, ``torch``) are refused.
Needs the ``onnx`` package (``pip install 'aslnet[export]'``)."""
__all__ = ["export_model", "export_onnx"]


def export_onnx(model, filepath, opset_version=None, verbose=None):
    """Write ``model`` as an ONNX graph (opset ``opset_version``, default 17)
    to ``filepath``, atomically.  Input and output in Keras's layout (NHWC),
    batch dimension dynamic; inference semantics (BatchNormalization with its
    moving statistics, Dropout as identity); float32 whatever the model's
    dtype policy."""
    import onnx

    from ..saving import file_io
    from .onnx_export import to_onnx
    proto = to_onnx(model, opset_version)
    with file_io.atomic_file(filepath, overwrite=True) as tmp:
        onnx.save_model(proto, tmp)
    if verbose:
        print(f"Saved artifact at '{filepath}'.")


def export_model(model, filepath, format="tf_saved_model", verbose=None,
                 input_signature=None, **kwargs):
    """``Model.export``: ``format="onnx"`` only."""
    if format != "onnx":
        raise NotImplementedError(f"export format={format!r}: aslnet exports "
                                  "format='onnx' only (run it with ONNX Runtime, or convert "
                                  "the ONNX file for other runtimes)")
    if input_signature is not None:
        raise NotImplementedError("export(input_signature=...): aslnet exports the model's "
                                  "own input (batch dimension dynamic); leave it out")
    opset = kwargs.pop("opset_version", None)
    if kwargs:
        raise TypeError(f"export(format='onnx'): unexpected arguments {sorted(kwargs)} "
                        "(aslnet takes opset_version)")
    export_onnx(model, filepath, opset_version=opset, verbose=verbose)
