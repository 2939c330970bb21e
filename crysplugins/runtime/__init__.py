"""ONNX inference runtime (no torch): the model registry (:mod:`crysplugins.runtime.models`) and
periodic tiling (:mod:`crysplugins.runtime.tiling`)."""
