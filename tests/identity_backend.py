"""The README's example separation backend: everything is dialogue (a new backend is a module like this one)."""

from dubprep.stages.backends.separation import DIALOGUE, SeparationBackend, SeparationStream


class AllDialogue(SeparationStream):
    def process(self, block):
        return {DIALOGUE: block}  # (frames, channels) in, its dialogue out, sample-aligned


class Identity(SeparationBackend):
    """DX is the mix; no music splitter, so MX is silent and FX = ME (silent too)."""

    def open(self, params, channels, device):
        return [AllDialogue() for _ in channels]
