"""Segmented rendering: segments and their join, resume, Ray workers and the driver."""
