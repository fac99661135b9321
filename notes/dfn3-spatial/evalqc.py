"""Tune clips: dialogue SDR, ME SDR and QC's speech-in-ME seconds for DFN3 and the spatial filter."""
import sys, glob, os, time
sys.path.insert(0, "/tmp/spbench")
import numpy as np, soundfile as sf
from pathlib import Path
import dubprep.stages.backends.dfn3_spatial as m
from evalst import run, sdr
from dubprep.qc.speech import detect_speech
from dubprep.progress import NullProgress
def speech_s(me):
    path = f"/tmp/spbench/me_{os.getpid()}.wav"
    sf.write(path, me, 48000, subtype="FLOAT")
    return sum(s.duration_s for s in detect_speech([Path(path)], "stereo", NullProgress()))
_base = {}
def evaluate(label, clips=8, **consts):
    for k, v in consts.items(): setattr(m, k.upper(), v)
    m._window.cache_clear()
    rows = []; t = time.time()
    for path in sorted(glob.glob("/tmp/spbench/clips/clip*.npz"))[:clips]:
        z = np.load(path)
        mix, sp = z["mix"], z["speech"]; me_true = z["music"] + z["effects"]
        if path not in _base:
            base = np.stack([z["dmid"] + z["dside"], z["dmid"] - z["dside"]], 1)
            _base[path] = (sdr(sp, base), sdr(me_true, mix - base), speech_s(mix - base))
        d = run(mix, np.stack([z["dmid"], z["dside"]], 1))
        rows.append((*_base[path], sdr(sp, d), sdr(me_true, mix - d), speech_s(mix - d)))
    r = np.array(rows)
    print(f"{label:28s} dfn3 D {r[:,0].mean():6.2f} ME {r[:,1].mean():6.2f} QC {r[:,2].sum():5.1f}s | spatial D {r[:,3].mean():6.2f} ME {r[:,4].mean():6.2f} QC {r[:,5].sum():5.1f}s | dD " + " ".join(f"{x:+.2f}" for x in r[:,3]-r[:,0]) + " | QC " + " ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(r[:,2], r[:,5])) + f" ({time.time()-t:.0f}s)", flush=True)
