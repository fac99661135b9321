"""Evaluate dfn3-spatial's filter on cached tune clips (exact product path minus DFN3, which is cached)."""
import sys, glob, functools, time
import numpy as np
import dubprep.stages.backends.dfn3_spatial as m
from dubprep.stages.backends.streaming import ChunkedStream, ChunkPlan, crossfade_weights, trimmed_tail

def sdr(r, e): return float(10 * np.log10(np.sum(r**2) / np.sum((r - e) ** 2)))

def run(mix, refs, mid_side=True):
    ch = mix.shape[1]
    def filt(chunks):
        out = np.zeros((len(chunks), 1, *chunks.shape[1:]), dtype=np.float32)
        for row, c in enumerate(chunks):
            out[row, 0, :ch] = m.wiener_dialogue(c[:ch], c[ch:], mid_side)
        return out
    plan = ChunkPlan(m.CHUNK_SAMPLES, m.CHUNK_SAMPLES - m.FADE_SAMPLES, trimmed_tail, batch_chunks=1)
    cs = ChunkedStream(plan, filt, ch + refs.shape[1], 1, functools.partial(crossfade_weights, fade_samples=m.FADE_SAMPLES))
    x = np.concatenate([mix, refs], 1).astype(np.float32)
    parts = [cs.process(x[i:i+96000]) for i in range(0, len(x), 96000)] + [cs.flush()]
    return np.concatenate(parts, axis=2)[0, :ch].T

def evaluate(label, **consts):
    for k, v in consts.items(): setattr(m, k.upper(), v)
    rows = []; t = time.time()
    for path in sorted(glob.glob("/tmp/spbench/clips/clip*.npz")):
        z = np.load(path)
        mix, sp = z["mix"], z["speech"]
        base = np.stack([z["dmid"] + z["dside"], z["dmid"] - z["dside"]], 1)
        d = run(mix, np.stack([z["dmid"], z["dside"]], 1))
        me_true = z["music"] + z["effects"]
        rows.append((sdr(sp, base), sdr(sp, d), sdr(me_true, mix - base), sdr(me_true, mix - d)))
    r = np.array(rows)
    print(f"{label:40s} dfn3 D {r[:,0].mean():6.2f} ME {r[:,2].mean():6.2f} | spatial D {r[:,1].mean():6.2f} ME {r[:,3].mean():6.2f} | "
          f"per-clip dD " + " ".join(f"{x:+.2f}" for x in r[:,1]-r[:,0]) + f"  ({time.time()-t:.0f}s)", flush=True)
    return r

if __name__ == "__main__":
    evaluate("default")

def evaluate_mono(label, **consts):
    """Each channel alone with its DFN3 image as reference: the single-channel post-filter."""
    for k, v in consts.items(): setattr(m, k.upper(), v)
    rows = []
    for path in sorted(glob.glob("/tmp/spbench/clips/clip*.npz")):
        z = np.load(path)
        mix, sp = z["mix"], z["speech"]
        base = np.stack([z["dmid"] + z["dside"], z["dmid"] - z["dside"]], 1)
        d = np.concatenate([run(mix[:, c:c+1], base[:, c:c+1], False) for c in range(2)], 1)
        rows.append((sdr(sp, base), sdr(sp, d)))
    r = np.array(rows)
    print(f"{label:40s} mono post-filter: dfn3 D {r[:,0].mean():6.2f} filtered D {r[:,1].mean():6.2f} per-clip " + " ".join(f"{x:+.2f}" for x in r[:,1]-r[:,0]), flush=True)
