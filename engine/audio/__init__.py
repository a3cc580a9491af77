"""The input's sound: decoding, probing, the input's streams, the soundtrack, the example music."""
