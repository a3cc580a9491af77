"""The runtime engine: audio analysis, latent paths, generators (ONNX Runtime, OpenVINO), video, scale-out.

Never imports torch. The public API is `ganterp_fast`; each sub-package holds one concern:
`audio`, `analysis`, `latent`, `backends`, `video`, `scale`, with the render job (`job`,
`api`, `options`) and what they share (`errors`, `files`, `cache`, `pipeline`) at the top.
"""
