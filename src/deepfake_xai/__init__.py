"""deepfake-xai: detect synthetic (GAN-made) face images and explain why a detector decides."""

__version__ = "0.1.0"
