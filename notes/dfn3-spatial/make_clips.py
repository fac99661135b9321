"""Tune clips (benchmarks/sepdata.py, tune packages only) + DFN3 mid/side dialogue, cached as npz."""
import sys, os
sys.path.insert(0, "/work/wt/spatial/benchmarks")
os.environ["DUBPREP_BENCH_CACHE"] = "/work/cache/debian"
import numpy as np
from sepdata import find_sources, make_clip, unpacked_root
from dubprep.stages.backends.separation import SEPARATORS, DIALOGUE
from dubprep.stages.backends.dfn3 import Dfn3Params

def dfn3(signal):
    (st,) = SEPARATORS.get("dfn3").open(Dfn3Params(), [1], "cpu")
    out = [st.process(signal[i:i+48000, None])[DIALOGUE] for i in range(0, len(signal), 48000)]
    out.append(st.flush()[DIALOGUE]); st.close()
    return np.concatenate(out)[:, 0]

if __name__ == "__main__":
    sources = find_sources(unpacked_root())
    for index in range(int(sys.argv[1]), int(sys.argv[2])):
        path = f"/tmp/spbench/clips/clip{index:02d}.npz"
        if os.path.exists(path):
            continue
        clip = make_clip(sources, index, 1000 + index)
        mix = clip.mix
        mid, side = (mix[:, 0] + mix[:, 1]) / 2, (mix[:, 0] - mix[:, 1]) / 2
        np.savez(path, mix=mix, speech=clip.speech, music=clip.music, effects=clip.effects, dmid=dfn3(mid), dside=dfn3(side))
        print("done", index, flush=True)
