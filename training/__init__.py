"""Training: MNIST -> LeNet-5 -> verified ONNX artifact. Never imports service."""
