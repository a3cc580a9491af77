"""Pictures: compositing (size, fit, layout), the input's own video, H.264 encoding."""
