"""The latent path: classes, z and truncation per frame, cue sheets, the ImageNet classes."""
