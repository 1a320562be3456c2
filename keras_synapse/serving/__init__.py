"""Serving a trained model: the registry and its model card, ONNX export, inference on new bars,
drift checks, and the HTTP app.
"""
