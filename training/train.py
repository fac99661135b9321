"""Train the cinesep network; resumes from the latest checkpoint in ``--checkpoints``.

    python -m training.train [--pools DIR] [--checkpoints DIR] [--steps N] [--device auto|cpu|cuda]

Checkpoints (``step_NNNNNNNN.pt``: network, optimizer, step) are written
atomically every ``--every`` steps and on Ctrl-C / SIGTERM; the newest
``--keep`` are kept. Start the same command again and it continues from the
newest one, step counter included. The loss is the negative SNR of each stem
in the STFT domain (the STFT is a tight frame here, so this is the
waveform SNR without an inverse STFT per step), with a floor of 1e-3 of the
mix energy so a silent stem's leakage counts without the score exploding.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from dubprep.stages.backends.cinesep_net import STEMS, CineSepNet, NetConfig, parameter_count
from training.data import Examples, Pools
from training.sources import SAMPLE_RATE

CHECKPOINT_GLOB = "step_*.pt"
SILENCE_FLOOR = 1e-3  # energy floor of each stem's SNR, relative to the mix energy


@dataclass(frozen=True)
class TrainOptions:
    """How long and how fast to train; ``steps`` is the total to reach, counting steps done before a resume."""

    checkpoints: Path
    steps: int
    every: int = 200
    keep: int = 3
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 1e-2
    clip_norm: float = 5.0
    log_every: int = 10


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when torch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob(CHECKPOINT_GLOB))
    return found[-1] if found else None


def save_checkpoint(folder: Path, step: int, net: CineSepNet, optimizer: torch.optim.Optimizer, keep: int) -> Path:
    """Write ``step_NNNNNNNN.pt`` atomically; delete all but the newest ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    partial = path.with_suffix(".pt.partial")
    state = {"step": step, "config": net.config.as_dict(), "net": net.state_dict(), "optimizer": optimizer.state_dict()}
    torch.save(state, partial)
    os.replace(partial, path)
    for old in sorted(folder.glob(CHECKPOINT_GLOB))[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: Path, device: torch.device) -> tuple[int, CineSepNet, dict]:
    """(step, network, optimizer state) of a checkpoint."""
    state = torch.load(path, map_location=device, weights_only=True)
    config = state["config"]
    net = CineSepNet(NetConfig(**{**config, "dilations": tuple(config["dilations"])})).to(device)
    net.load_state_dict(state["net"])
    return state["step"], net, state["optimizer"]


def stem_snr_db(estimate: torch.Tensor, target: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """SNR (batch, 3) in dB of stem spectra (batch, 3, 2, bins, frames, 2) against the targets, floored."""
    floor = SILENCE_FLOOR * mix.square().sum(dim=(1, 2, 3, 4)).unsqueeze(1)  # shape: (batch, 1)
    error = (estimate - target).square().sum(dim=(2, 3, 4, 5))
    reference = target.square().sum(dim=(2, 3, 4, 5))
    return 10 * torch.log10((reference + floor) / (error + floor))


def _learning_rate(options: TrainOptions, step: int) -> float:
    return options.learning_rate * min(1.0, (step + 1) / options.warmup_steps)


def train(options: TrainOptions, batches: Iterable[torch.Tensor], device: torch.device, config: NetConfig) -> int:
    """Train until ``options.steps`` on batches of stems (batch, 3, 2, samples); return the step reached.

    Starts from the newest checkpoint in ``options.checkpoints`` if there is one.
    """
    resumed = latest_checkpoint(options.checkpoints)
    step, net, optimizer_state = (0, CineSepNet(config).to(device), None)
    if resumed is not None:
        step, net, optimizer_state = load_checkpoint(resumed, device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    print(f"{'resumed from ' + str(resumed) if resumed else 'new network'}: step {step}, "
          f"{parameter_count(net) / 1e6:.2f} M parameters, {device}", flush=True)
    stop = _stop_flag()
    started, snr_sum, seen = time.perf_counter(), torch.zeros(len(STEMS)), 0
    batch_iter: Iterator[torch.Tensor] = iter(batches)
    while step < options.steps and not stop:
        stems = next(batch_iter).to(device)
        snr = _step(net, optimizer, stems, _learning_rate(options, step), options.clip_norm)
        step += 1
        snr_sum, seen = snr_sum + snr, seen + 1
        if step % options.log_every == 0:
            scores = " ".join(f"{name} {value:5.2f}" for name, value in zip(STEMS, (snr_sum / seen).tolist()))
            rate = (time.perf_counter() - started) / seen
            print(f"step {step}: SNR dB {scores}; {rate:.2f} s/step", flush=True)
            started, snr_sum, seen = time.perf_counter(), torch.zeros(len(STEMS)), 0
        if step % options.every == 0:
            save_checkpoint(options.checkpoints, step, net, optimizer, options.keep)
    save_checkpoint(options.checkpoints, step, net, optimizer, options.keep)
    return step


def _step(
    net: CineSepNet, optimizer: torch.optim.Optimizer, stems: torch.Tensor, lr: float, clip: float
) -> torch.Tensor:
    """One optimisation step on stems (batch, 3, 2, samples); returns the batch's mean SNR per stem (3,)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    mix_spectra = net.stft(stems.sum(dim=1))  # shape: (batch, 2, bins, frames)
    with torch.no_grad():
        targets = torch.view_as_real(net.stft(stems))  # shape: (batch, 3, 2, bins, frames, 2)
    snr = stem_snr_db(net.separate_spectra(mix_spectra), targets, torch.view_as_real(mix_spectra))
    optimizer.zero_grad(set_to_none=True)
    (-snr.mean()).backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    optimizer.step()
    return snr.detach().mean(dim=0).cpu()


class _stop_flag:
    """Truthy once SIGTERM or SIGINT arrived: the loop then checkpoints and returns."""

    def __init__(self) -> None:
        self._stopped = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)

    def _stop(self, signum: int, frame: object) -> None:
        self._stopped = True

    def __bool__(self) -> bool:
        return self._stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=Path, default=Path.home() / ".cache" / "dubprep-train" / "pools")
    parser.add_argument("--checkpoints", type=Path, default=Path(".cache/training"))
    parser.add_argument("--steps", type=int, default=100_000, help="total steps to reach")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--segment-s", type=float, default=3.0)
    parser.add_argument("--every", type=int, default=200, help="checkpoint every N steps")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--workers", type=int, default=1, help="processes making examples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    done = latest_checkpoint(args.checkpoints)
    # A new seed per resume: the examples after a restart are new ones, not a replay.
    seed = args.seed * 1_000_003 + (int(done.stem.split("_")[1]) if done else 0)
    examples = Examples(Pools.load(args.pools), int(args.segment_s * SAMPLE_RATE), seed)
    loader = torch.utils.data.DataLoader(
        examples, batch_size=args.batch, num_workers=args.workers, persistent_workers=args.workers > 0,
        worker_init_fn=lambda _: torch.set_num_threads(1),
    )
    options = TrainOptions(checkpoints=args.checkpoints, steps=args.steps, every=args.every, learning_rate=args.lr)
    train(options, loader, device, NetConfig())


if __name__ == "__main__":
    main()
