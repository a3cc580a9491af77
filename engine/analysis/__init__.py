"""The seed's analysis: spectrogram, total-variation distances, inflection points; beats, onsets; plots."""
