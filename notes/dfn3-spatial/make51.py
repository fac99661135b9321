"""Tune-split 5.1 clips built from the cached stereo tune clips' stems; DFN3 on C, L, R cached."""
import sys, os, glob
import numpy as np
from scipy.signal import lfilter, butter
sys.path.insert(0, "/tmp/spbench")
from make_clips import dfn3
SR = 48000
for path in sorted(glob.glob("/tmp/spbench/clips/clip*.npz"))[: int(sys.argv[1])]:
    out = path.replace("clips/clip", "clips51/clip")
    if os.path.exists(out):
        continue
    index = int(path[-6:-4])
    rng = np.random.default_rng(500 + index)
    z = np.load(path)
    speech = z["speech"][:, 0] * np.sqrt(2)
    music, fx = z["music"], z["effects"]
    frames = len(speech)
    bleed = [0.0, 0.125, 0.25, 0.5][index % 4]  # dialogue divergence into L and R: off, -18, -12, -6 dB
    music_c = [0.0, 0.5][(index // 2) % 2]  # music's share in C
    names = ("L", "R", "C", "LFE", "Ls", "Rs")
    ch = {n: np.zeros(frames, np.float32) for n in names}
    ch["C"] += speech; ch["L"] += bleed * speech; ch["R"] += bleed * speech
    ch["L"] += music[:, 0]; ch["R"] += music[:, 1]; ch["C"] += music_c * (music[:, 0] + music[:, 1]) / 2
    delay = int(0.015 * SR)  # surrounds: delayed, quieter music
    ch["Ls"][delay:] += 0.4 * music[:-delay, 0]; ch["Rs"][delay:] += 0.4 * music[:-delay, 1]
    # effects: 2-s segments, each routed to the five channels with random gains (crossfaded 0.1 s)
    mono_fx = fx.mean(1)
    seg = 2 * SR
    gains = rng.uniform(0, 1, size=(frames // seg + 2, 5)) ** 2
    gains /= np.sqrt((gains**2).sum(1, keepdims=True))
    t = np.arange(frames) / seg
    for k, n in enumerate(("L", "R", "C", "Ls", "Rs")):
        g = np.interp(t, np.arange(len(gains)) + 0.5, gains[:, k])
        ch[n] += (mono_fx * g * np.sqrt(2)).astype(np.float32)
    b, a = butter(4, 120 / (SR / 2))
    ch["LFE"] += lfilter(b, a, mono_fx).astype(np.float32) * 2
    mix = np.stack([ch[n] for n in names], 1).astype(np.float32)
    dial = np.zeros_like(mix); dial[:, 2] = speech; dial[:, 0] = bleed * speech; dial[:, 1] = bleed * speech
    peak = np.abs(mix).max()
    if peak > 0.99:
        mix *= 0.99 / peak; dial *= 0.99 / peak
    np.savez(out, mix=mix, dialogue=dial, dC=dfn3(mix[:, 2]), dL=dfn3(mix[:, 0]), dR=dfn3(mix[:, 1]), bleed=bleed, music_c=music_c)
    print("done", out, bleed, music_c, flush=True)
