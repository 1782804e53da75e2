"""Networks trace-bench implements itself so that published checkpoints load strictly:
AMT-S (frame interpolation), MUSIQ (image quality), ViCLIP ViT-L/14 (video-text)."""
